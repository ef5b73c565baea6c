"""A trained model as evaluate, `deepnormal-predict` and the served model use it: the
checkpoint's network and table encoder together, a table in, a predictive distribution out.
Torch, numpy and pandas; never Lightning or MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from deepnormal.errors import DeepnormalError, first_line
from deepnormal.network import NET_ARGS, DeepNormalNet
from deepnormal.preprocessing import Encoded, TableEncoder


@dataclass(frozen=True)
class Prediction:
    """The predictive distribution per row: the family with the Normal (loc, scale) of the
    transformed target, and what encoding the rows met (unseen categories, empty cells)."""

    family: object
    loc: np.ndarray
    scale: np.ndarray
    unknown: dict[str, int]
    filled: dict[str, int]

    @property
    def params(self) -> tuple:
        return self.loc, self.scale

    def mean(self) -> np.ndarray:
        return self.family.mean(self.loc, self.scale)

    def median(self) -> np.ndarray:
        return self.family.median(self.loc, self.scale)

    def std(self) -> np.ndarray:
        return self.family.std(self.loc, self.scale)

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """The central `level` interval's bounds."""
        return self.family.interval(level, self.loc, self.scale)


class TrainedModel:
    def __init__(self, net: DeepNormalNet, encoder: TableEncoder) -> None:
        self.net, self.encoder = net, encoder
        self.family = encoder.family
        self.feature_names = encoder.feature_names
        self.target_name = encoder.target["name"]

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
        return self.predict_encoded(self.encode(frame, source), calibrated)

    def predict_encoded(self, encoded: Encoded, calibrated: bool = True) -> Prediction:
        """The prediction for a table already encoded (evaluate encodes each split once)."""
        loc, scale = self.net.predict(encoded.numeric, encoded.codes, calibrated)
        return Prediction(self.family, loc, scale, encoded.unknown, encoded.filled)

    def predict_members(self, encoded: Encoded) -> tuple[np.ndarray, np.ndarray]:
        return self.net.predict_members(encoded.numeric, encoded.codes)


def load_model(path) -> TrainedModel:
    """Rebuild the model from a Lightning checkpoint with weights-only (safe) loading.

    weights_only=True refuses any pickled object other than tensors and primitives, so a
    tampered checkpoint cannot run code; the table encoder is stored as plain lists and
    numbers for that reason.
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
    missing = [name for name in NET_ARGS if name not in hparams]
    if missing:
        raise DeepnormalError(f"checkpoint {path} lacks hyperparameters {missing}; it was "
                              "written by an older deepnormal: retrain it (`dvc repro`)")
    net = DeepNormalNet(**{name: hparams[name] for name in NET_ARGS})
    prefix = "net."
    state = {key.removeprefix(prefix): value
             for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}
    net.load_state_dict(state)
    net.eval()
    return TrainedModel(net, TableEncoder.from_dict(hparams["table"]))
