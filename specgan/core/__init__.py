"""Shared foundations: params (config), errors, atomic writes, hashing, redaction, MLflow tracking helpers."""
