"""Kubeflow components: thin wrappers that map KFP artifacts and parameters onto the specgan step functions."""

from components.steps import make_components

__all__ = ["make_components"]
