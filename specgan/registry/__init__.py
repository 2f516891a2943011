"""MLflow registry: registering, the promotion gate, the pyfunc model, sweeps."""
