"""SpecGAN drum synthesis: the core library behind the DVC stages and the Kubeflow components."""

__version__ = "0.1.0"
