"""The generator as an MLflow pyfunc model: seeds in, audio out, with its sample rate.

The logged model carries ``generator.pt`` (weights, normalization stats, model and feature config), this
package's code, and as its model config the params' ``render`` and ``synthesize`` sections at registration:
the served model's render settings, which a request may override (``params={"griffin_lim_iters": 60}``).
Each row of the answer holds ``sample_rate`` and the sound: ``audio``, float samples (the default), or with
``params={"format": "wav"}`` ``wav_base64``, a 16-bit PCM WAV file in base64 (an eighth of the JSON's size).
So ``mlflow.pyfunc.load_model`` and ``specgan synthesize`` work on a machine with no project folder.
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
REQUEST_PARAMS = ("griffin_lim_iters", "momentum")  # render settings a request may change
FORMATS = ("float", "wav")  # params={"format": ...}: float samples (default) or a base64 16-bit PCM WAV file


class SpecGanModel(mlflow.pyfunc.PythonModel):
    """predict(DataFrame with an integer ``seed`` column, and for a conditional model an optional ``class``
    column; default every class in turn) -> DataFrame, a row a sound: ``sample_rate`` and ``audio`` (float32
    samples) or, with ``params={"format": "wav"}``, ``wav_base64``."""

    def load_context(self, context: Any) -> None:
        import torch

        from specgan.audio.synthesis import DrumGenerator

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.generator = DrumGenerator.load(context.artifacts[ARTIFACT_KEY], device)
        self.settings = dict(context.model_config or {})

    def render_config(self, params: dict | None = None) -> Any:
        """The registered render settings with a request's overrides, validated like params.yaml."""
        from specgan.core.config import RenderConfig, build_section

        raw = {**self.settings["render"], **{k: v for k, v in (params or {}).items() if k in REQUEST_PARAMS}}
        return build_section(RenderConfig, raw, "render")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """A request beyond ``MAX_SOUNDS`` rows, without seeds, or with an unknown class is refused with an
        error the scoring server answers as HTTP 400 (bounded memory: one row is one clip)."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from specgan.core.config import MAX_SOUNDS, ConfigError
        from specgan.core.errors import SpecganError

        def refuse(message: str) -> MlflowException:
            return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)

        if "seed" not in model_input or len(model_input) == 0:
            raise refuse("input needs an integer 'seed' column: one sound per row")
        if len(model_input) > MAX_SOUNDS:
            raise refuse(f"{len(model_input)} rows: at most {MAX_SOUNDS} sounds a request")
        seeds = [int(s) for s in model_input["seed"]]
        names = None
        if "class" in model_input and model_input["class"].notna().any():
            names = [str(c) for c in model_input["class"]]
        fmt = str((params or {}).get("format") or FORMATS[0])
        if fmt not in FORMATS:
            raise refuse(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
        try:
            y = self.generator.class_ids(names, len(seeds))
            render = self.render_config(params)
        except (SpecganError, ConfigError) as exc:
            raise refuse(str(exc)) from None
        audio = self.generator.audio(self.generator.latents(seeds), render, y).cpu().numpy().astype(np.float32)
        sr = self.generator.features.sample_rate
        if fmt == "wav":
            import base64

            from specgan.audio.synthesis import wav_bytes

            return pd.DataFrame({"sample_rate": sr, "wav_base64": [base64.b64encode(wav_bytes(a, sr)).decode("ascii")
                                                                  for a in audio]})
        return pd.DataFrame({"sample_rate": sr, "audio": list(audio)})


def log_generator_model(generator_path: str | Path, render: Any, synthesize: Any) -> Any:
    """Log the pyfunc model (signature with request params, input example, the params' render and synthesize
    sections as its model config) into the active run; returns ModelInfo."""
    import dataclasses

    import torch

    from specgan.audio.synthesis import DrumGenerator

    settings = {"render": dataclasses.asdict(render), "synthesize": dataclasses.asdict(synthesize)}
    example = pd.DataFrame({"seed": [0, 1]})
    probe = SpecGanModel()  # a separate instance: the logged one must not pickle loaded weights
    probe.generator, probe.settings = DrumGenerator.load(generator_path), settings
    audio = probe.predict(None, example)
    request = {**{k: settings["render"][k] for k in REQUEST_PARAMS}, "format": FORMATS[0]}
    signature = mlflow.models.infer_signature(example, audio, params=request)
    if probe.generator.conditional:  # the class column is optional: without it, every class in turn
        from mlflow.types.schema import ColSpec, Schema

        signature.inputs = Schema([ColSpec("long", "seed"), ColSpec("string", "class", required=False)])
    pkg = Path(specgan.__file__).parent
    return mlflow.pyfunc.log_model(
        name=MODEL_NAME_IN_RUN, python_model=SpecGanModel(), artifacts={ARTIFACT_KEY: str(generator_path)},
        code_paths=[str(pkg)], signature=signature, input_example=example, model_config=settings,
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"torchaudio=={_version('torchaudio')}",
                          f"numpy=={np.__version__}", f"pandas=={pd.__version__}", f"mlflow=={mlflow.__version__}"])


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist).split("+")[0]
