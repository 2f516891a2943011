"""Using a trained generator: synthesize, interpolate, invert."""
