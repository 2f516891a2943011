"""The generator as an MLflow pyfunc model: seeds in, 16 kHz audio out.

The logged model carries ``generator.pt`` (weights, normalization stats, model/feature/render config)
and this package's code, so ``mlflow.pyfunc.load_model`` works on a machine with no training outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

import specgan

ARTIFACT_KEY = "generator"
MODEL_NAME_IN_RUN = "generator"


class SpecGanModel(mlflow.pyfunc.PythonModel):
    """predict(DataFrame with an integer ``seed`` column) -> float32 [rows, samples] audio."""

    def load_context(self, context: Any) -> None:
        import torch

        from specgan.synthesis import DrumGenerator

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.generator = DrumGenerator.load(context.artifacts[ARTIFACT_KEY], device)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        if "seed" not in model_input:
            raise ValueError("input needs an integer 'seed' column: one sound per row")
        seeds = [int(s) for s in model_input["seed"]]
        return self.generator.audio(self.generator.latents(seeds)).cpu().numpy().astype(np.float32)


def log_generator_model(generator_path: str | Path) -> Any:
    """Log the pyfunc model (signature and input example set) into the active run; returns ModelInfo."""
    import torch

    from specgan.synthesis import DrumGenerator

    example = pd.DataFrame({"seed": [0, 1]})
    probe = SpecGanModel()  # a separate instance: the logged one must not pickle loaded weights
    probe.generator = DrumGenerator.load(generator_path)
    audio = probe.predict(None, example)
    signature = mlflow.models.infer_signature(example, audio)
    pkg = Path(specgan.__file__).parent
    return mlflow.pyfunc.log_model(
        name=MODEL_NAME_IN_RUN, python_model=SpecGanModel(), artifacts={ARTIFACT_KEY: str(generator_path)},
        code_paths=[str(pkg)], signature=signature, input_example=example,
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"torchaudio=={_version('torchaudio')}",
                          f"numpy=={np.__version__}", f"pandas=={pd.__version__}", f"mlflow=={mlflow.__version__}"])


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist).split("+")[0]
