"""The GAN train loop (SPEC.md 7): steps, checkpoints, distributed training, logging."""
