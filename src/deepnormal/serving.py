"""The trained model as an MLflow pyfunc: a table of the raw feature columns in (numbers,
text categories, dates, empty cells; a category never seen in training is predicted as
"unknown"), the predictive `mean`, `median`, `std`, the network's Normal `mu`, `sigma`, the
central interval bounds `lower_<level>` / `upper_<level>` and `out_of_range` (the row's
numbers or dates beyond the training range, held near it) out, in the target's
original units (`deepnormal-predict` writes the same columns); no rows in, none out.
`mlflow models serve -m runs:/<run_id>/model --env-manager local -h 127.0.0.1` serves it;
loading needs only torch, numpy, pandas and scipy (the checkpoint is read weights-only).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

import deepnormal
from deepnormal.predictive import DEFAULT_LEVELS

MODEL_NAME = "model"


class DeepNormalPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from deepnormal.inference import load_model

        self.model = load_model(context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        prediction = self.model.predict(model_input, source="the request")
        return prediction.frame(DEFAULT_LEVELS)


def signature(model, example: pd.DataFrame):
    """The raw feature columns by name, each of MLflow's type "Any": a column may arrive as
    integers, floats, text or with nulls (empty cells), and the model's own encoder checks
    each value (text in a numeric column is one error naming the column). MLflow's typed
    columns refuse what real requests hold: a "double" refuses a column of integers ("cannot
    safely convert int64") and a "long" refuses a null. The outputs are doubles."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    from deepnormal.inference import OUTSIDE_COLUMN

    outputs = model.family.output_columns(DEFAULT_LEVELS)
    return ModelSignature(Schema([ColSpec(AnyType(), name) for name in example.columns]),
                          Schema([ColSpec("double", name) for name in outputs]
                                 + [ColSpec("long", OUTSIDE_COLUMN)]))


def log_model(checkpoint: Path, example: pd.DataFrame) -> None:
    """Log the checkpoint as a servable model with a signature and an input example (raw
    rows of the validation split, in the model's column order)."""
    from deepnormal.inference import load_model

    # An info line ("Validating input example ...") and a progress bar for a few small files.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    model = load_model(checkpoint)
    example = example[model.feature_names]
    mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        # Models from code: MLflow runs pyfunc_model.py on load rather than unpickling.
        python_model=str(Path(__file__).with_name("pyfunc_model.py")),
        artifacts={"checkpoint": str(checkpoint)},
        code_paths=[str(Path(deepnormal.__file__).parent)],
        signature=signature(model, example),
        input_example=example,
        # Stated, not inferred: inference imports the model in a subprocess, slowly.
        pip_requirements=requirements(),
    )


def requirements() -> list[str]:
    from importlib.metadata import version

    import torch

    # rtdl_num_embeddings: a network on piecewise-linearly encoded numbers (model.numeric_encoding).
    return [f"torch=={torch.__version__.split('+')[0]}", "numpy", "pandas", "scipy",
            f"mlflow=={mlflow.__version__}",
            f"rtdl_num_embeddings=={version('rtdl_num_embeddings')}"]
