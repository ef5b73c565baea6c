"""A trained model as evaluate, `deepnormal-predict` and the served model use it: the
checkpoint's network and table encoder together, a table in, a predictive distribution out.
Torch, numpy and pandas; never Lightning or MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from deepnormal.config import ModelParams
from deepnormal.errors import DeepnormalError, first_line
from deepnormal.network import DeepNormalNet
from deepnormal.predictive import Mixture, Predictive
from deepnormal.preprocessing import Encoded, TableEncoder

# The output column counting each row's cells beyond the training range (held near it).
OUTSIDE_COLUMN = "out_of_range"


@dataclass(frozen=True)
class Prediction:
    """The predictive distribution per row, and what encoding the rows met, per column:
    cells that went to the unknown category, empty cells filled, numbers or dates beyond the
    training range (held near it); and per row the count of the last."""

    distribution: Predictive
    unknown: dict[str, int]
    filled: dict[str, int]
    outside: dict[str, int]
    row_outside: np.ndarray

    def frame(self, levels, prefix: str = "") -> pd.DataFrame:
        """The output columns (predictive.Predictive.frame) and `out_of_range`."""
        return self.distribution.frame(levels, prefix).assign(
            **{f"{prefix}{OUTSIDE_COLUMN}": self.row_outside})

    def beside(self, table: pd.DataFrame, levels, prefix: str = "") -> pd.DataFrame:
        """`table` (its rows in the same order) with the output columns after its own."""
        table = table.reset_index(drop=True)
        return pd.concat([table, self.frame(levels, prefix)], axis=1)

    @staticmethod
    def output_columns(family, levels, prefix: str = "") -> list[str]:
        return [*family.output_columns(levels, prefix), f"{prefix}{OUTSIDE_COLUMN}"]

    def note(self) -> str | None:
        """One line on the cells that were filled, met an unseen category or lay beyond the
        training range, and on rows without a finite mean or std; or None."""
        parts = []
        unknown = {name: n for name, n in self.unknown.items() if n}
        filled = {name: n for name, n in self.filled.items() if n}
        outside = {name: n for name, n in self.outside.items() if n}
        if outside:
            parts.append(f"{sum(outside.values())} cell(s) lay beyond the range the training "
                         f"split spanned ({', '.join(f'{k}: {v}' for k, v in outside.items())})"
                         f", held within one training std of it; column {OUTSIDE_COLUMN} counts "
                         "them per row")
        without = self.distribution.without_moments()
        if without:
            parts.append(f"{without} row(s) have no finite mean or std (written empty)")
        if unknown:
            parts.append(f"{sum(unknown.values())} cell(s) held a category not seen in "
                         f"training or too rare there "
                         f"({', '.join(f'{k}: {v}' for k, v in unknown.items())}),"
                         " predicted as 'unknown'")
        if filled:
            parts.append(f"{sum(filled.values())} empty cell(s) filled as in training "
                         f"({', '.join(f'{k}: {v}' for k, v in filled.items())})")
        return "; ".join(parts) or None


class TrainedModel:
    def __init__(self, net: DeepNormalNet, encoder: TableEncoder) -> None:
        self.net, self.encoder = net, encoder
        self.family = encoder.family
        self.feature_names = encoder.feature_names
        self.target_name = encoder.target.name

    @property
    def sigma_scale(self) -> float:
        return float(self.net.sigma_scale)

    @property
    def ensemble_size(self) -> int:
        return self.net.ensemble_size

    def encode(self, frame: pd.DataFrame, source: str = "the input") -> Encoded:
        return self.encoder.encode(frame, source)

    def predict(self, frame: pd.DataFrame, calibrated: bool = True,
                source: str = "the input") -> Prediction:
        encoded = self.encode(frame, source)
        return Prediction(self.distribution(encoded, calibrated), encoded.unknown,
                          encoded.filled, encoded.outside, encoded.row_outside)

    def distribution(self, encoded: Encoded, calibrated: bool = True) -> Predictive:
        """The predictive distribution of a table already encoded (evaluate encodes each
        split once): one distribution of the family with the members' mean and variance, or
        the members' exact mixture, as the family says (its `ensemble`)."""
        if self.family.ensemble == "moments":
            return self.family(*self.net.predict(encoded.numeric, encoded.codes, calibrated))
        return Mixture(self.members(encoded, calibrated))

    def members(self, encoded: Encoded, calibrated: bool = True) -> Predictive:
        """Each ensemble member's distribution, parameters [M, n]: the mixture whose exact
        density `metrics.mixture_nll` scores."""
        return self.family(**self.net.predict_members(encoded.numeric, encoded.codes,
                                                      calibrated))


def load_model(path) -> TrainedModel:
    """Rebuild the model from a Lightning checkpoint with weights-only (safe) loading.

    weights_only=True refuses any pickled object other than tensors and primitives, so a
    tampered checkpoint cannot run code; the table encoder and the settings are stored as
    plain dicts, lists and numbers for that reason.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DeepnormalError(f"checkpoint {path} is missing; run the train stage") from None
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError...
        raise DeepnormalError(
            f"checkpoint {path} cannot be loaded safely (weights only): {first_line(error)}"
        ) from None
    hparams = checkpoint.get("hyper_parameters", {})
    missing = [name for name in ("table", "model") if name not in hparams]
    if missing:
        raise DeepnormalError(f"checkpoint {path} lacks hyperparameters {missing}; it was "
                              "written by an older deepnormal: retrain it (`dvc repro`)")
    encoder = TableEncoder.from_dict(hparams["table"])
    net = DeepNormalNet.for_table(encoder, ModelParams.model_validate(hparams["model"]))
    prefix = "net."
    state = {key.removeprefix(prefix): value
             for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}
    net.load_state_dict(state)
    net.eval()
    return TrainedModel(net, encoder)

