"""Audio out: Griffin-Lim inversion (SPEC.md 8), the generator as a sound source, plots."""
