"""The trained model as an MLflow pyfunc: a table of feature columns in, `mu` and `sigma`
out, in original units.
`mlflow models serve -m runs:/<run_id>/model --env-manager local -h 127.0.0.1` serves it;
loading needs only torch, numpy and pandas (the checkpoint is read weights-only).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

import deepnormal

MODEL_NAME = "model"


class DeepNormalPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from deepnormal.network import load_checkpoint

        self.net = load_checkpoint(context.artifacts["checkpoint"])
        self.features = list(context.model_config["features"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        mu, sigma = self.net.predict(model_input[self.features].to_numpy(dtype="float64"))
        return pd.DataFrame({"mu": mu, "sigma": sigma})


def log_model(checkpoint: Path, example: pd.DataFrame) -> None:
    """Log the checkpoint as a servable model with a signature and an input example."""
    from mlflow.models import infer_signature

    from deepnormal.network import load_checkpoint

    # An info line ("Validating input example ...") and a progress bar for a few small files.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mu, sigma = load_checkpoint(checkpoint).predict(example.to_numpy(dtype="float64"))
    signature = infer_signature(example, pd.DataFrame({"mu": mu, "sigma": sigma}))
    mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        # Models from code: MLflow runs pyfunc_model.py on load rather than unpickling.
        python_model=str(Path(__file__).with_name("pyfunc_model.py")),
        artifacts={"checkpoint": str(checkpoint)},
        code_paths=[str(Path(deepnormal.__file__).parent)],
        model_config={"features": list(example.columns)},
        signature=signature,
        input_example=example,
        # Stated, not inferred: inference imports the model in a subprocess, slowly.
        pip_requirements=requirements(),
    )


def requirements() -> list[str]:
    import torch

    return [f"torch=={torch.__version__.split('+')[0]}", "numpy", "pandas",
            f"mlflow=={mlflow.__version__}"]
