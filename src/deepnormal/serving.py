"""The trained model as an MLflow pyfunc: a table of feature columns in, `mu` and `sigma`
out, in original units.
`mlflow models serve -m runs:/<run_id>/model --env-manager local -h 127.0.0.1` serves it;
loading needs only torch, numpy and pandas (the checkpoint is read weights-only).
"""

from __future__ import annotations

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


def prepare() -> None:
    """Do ahead what log_model would otherwise do first: import torch and map installed
    modules to packages, which MLflow does to check the requirements (about 0.6 s here;
    the mapping is MLflow's internal cache, so this is best effort)."""
    from deepnormal import network  # noqa: F401  (and torch)

    try:
        from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches
    except ImportError:
        return
    warn_dependency_requirement_mismatches(requirements())
