"""The deep normal network: torch only, so evaluation and serving never import Lightning.

x (original units) -> standardise -> MLP body -> two heads:
    mean head  -> mu_z
    scale head -> sigma_z = link(raw) + sigma_floor   (link: softplus, exp or square)
-> back to original units: mu = y_mean + y_std * mu_z, sigma = y_std * sigma_z.
The standardisation statistics are plain numbers (hyperparameters), fitted on the
training split only, so a checkpoint alone reproduces predictions in original units.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
}
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

# Maps the scale head's raw output to sigma_z >= 0 (before the floor), and the raw value
# at which sigma_z = 1, the scale head's initial bias: training starts at unit variance.
SCALE_LINKS = {
    # softplus: the common choice; sigma -> 0 only as raw -> -inf.
    "softplus": (F.softplus, math.log(math.e - 1.0)),
    # exp: a log-sigma output.
    "exp": (torch.exp, 0.0),
    # square: sigma = raw^2 reaches 0 where a smooth raw crosses 0, so a noise level that
    # touches zero (the reference data's sigma at x = -3.93) is reachable without driving
    # any weight to infinity.
    "square": (torch.square, 1.0),
}


def standardisation(features: np.ndarray, target: np.ndarray, enabled: bool) -> dict:
    """Mean/std of the training split as plain floats (identity when disabled)."""
    d = features.shape[1]
    if not enabled:
        return {"x_mean": [0.0] * d, "x_std": [1.0] * d, "y_mean": 0.0, "y_std": 1.0}
    x_std = features.std(axis=0)
    y_std = float(target.std())
    # A constant column would divide by zero; leave it unscaled instead.
    x_std = np.where(x_std > 0, x_std, 1.0)
    return {
        "x_mean": [float(v) for v in features.mean(axis=0)],
        "x_std": [float(v) for v in x_std],
        "y_mean": float(target.mean()),
        "y_std": y_std if y_std > 0 else 1.0,
    }


class DeepNormalNet(nn.Module):
    def __init__(
        self,
        input_dim: int,
        hidden_sizes: list[int],
        activation: str,
        sigma_floor: float,
        x_mean: list[float],
        x_std: list[float],
        y_mean: float,
        y_std: float,
        scale_link: str = "softplus",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
            width = size
        self.body = nn.Sequential(*layers)
        self.mean_head = nn.Linear(width, 1)
        self.scale_head = nn.Linear(width, 1)
        self.link, unit_raw = SCALE_LINKS[scale_link]
        with torch.no_grad():
            self.scale_head.bias.fill_(unit_raw)
        self.sigma_floor = sigma_floor
        # Derived from the hyperparameters, so not saved twice in the state dict.
        self.register_buffer("x_mean", torch.tensor(x_mean), persistent=False)
        self.register_buffer("x_std", torch.tensor(x_std), persistent=False)
        self.y_mean = y_mean
        self.y_std = y_std

    def standardised(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu_z, sigma_z) in standardised target units, for original-unit inputs x."""
        hidden = self.body((x - self.x_mean) / self.x_std)
        mu_z = self.mean_head(hidden).squeeze(-1)
        sigma_z = self.link(self.scale_head(hidden).squeeze(-1)) + self.sigma_floor
        return mu_z, sigma_z

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma) in original target units."""
        mu_z, sigma_z = self.standardised(x)
        return self.y_mean + self.y_std * mu_z, self.y_std * sigma_z

    def standardise_target(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.y_mean) / self.y_std

    @torch.no_grad()
    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.eval()
        # torch.tensor copies: the inputs may be a read-only view of a pandas frame.
        mu, sigma = self(torch.tensor(features, dtype=torch.float32))
        return mu.double().numpy(), sigma.double().numpy()


def gaussian_nll_z(y_z: torch.Tensor, mu_z: torch.Tensor, sigma_z: torch.Tensor) -> torch.Tensor:
    """Per-point full Gaussian NLL in standardised units (add log(y_std) for original units)."""
    return HALF_LOG_2PI + torch.log(sigma_z) + 0.5 * ((y_z - mu_z) / sigma_z) ** 2


NET_ARGS = ("input_dim", "hidden_sizes", "activation", "sigma_floor",
            "x_mean", "x_std", "y_mean", "y_std", "scale_link")


def load_checkpoint(path) -> DeepNormalNet:
    """Rebuild the network from a Lightning checkpoint with weights-only (safe) loading.

    weights_only=True refuses any pickled object other than tensors and primitives, so a
    tampered checkpoint cannot run code.
    """
    from deepnormal.errors import DeepnormalError, first_line

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
        raise DeepnormalError(f"checkpoint {path} lacks hyperparameters {missing}")
    net = DeepNormalNet(**{name: hparams[name] for name in NET_ARGS})
    prefix = "net."
    state = {key.removeprefix(prefix): value
             for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}
    net.load_state_dict(state)
    net.eval()
    # Column names, recorded by training (older checkpoints: none).
    net.feature_names = hparams.get("feature_names")
    net.target_name = hparams.get("target_name")
    return net
