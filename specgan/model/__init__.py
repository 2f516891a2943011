"""The SpecGAN networks (SPEC.md 5 and 6), their losses and the generator file."""
