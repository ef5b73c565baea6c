"""The deep normal network: a deep ensemble of mean-variance MLPs. Torch only, so evaluation
and serving never import Lightning.

    x (original units) -> standardise -> M member MLPs, run as one batched network ->
    per member: mu_z, sigma_z = link(raw) + sigma_floor   (standardised units)
    -> one Gaussian: the mixture's mean and variance (moment matching)
    -> original units, sigma times the calibration factor sigma_scale.

M = model.ensemble_size members (Lakshminarayanan et al. 2017) have their own weights,
initialisation and batch order; stacked into [M, in, out] tensors they train as one network
with batched matrix products, so M = 5 costs far less than five trainings. M = 1 is the
single model. The standardisation statistics are plain numbers (hyperparameters) fitted on
the training split; sigma_scale is a buffer fitted on the validation split (see
`calibration_factor`); so a checkpoint alone reproduces predictions in original units.
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
    # softplus: the common choice; sigma -> 0 only as raw -> -inf, and linear growth above.
    "softplus": (F.softplus, math.log(math.e - 1.0)),
    # exp: a log-sigma output.
    "exp": (torch.exp, 0.0),
    # square: sigma = raw^2 reaches 0 wherever a smooth raw crosses 0.
    "square": (torch.square, 1.0),
}
# Rows per forward pass when predicting, so that M members on a large table stay in memory.
PREDICT_CHUNK = 65_536


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


class EnsembleLinear(nn.Module):
    """M independent linear layers as one batched product: [M, B, in] -> [M, B, out].

    Each member is initialised like torch.nn.Linear (uniform in +-1/sqrt(in)), independently.
    """

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features)
                                   .uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


def mixture_moments(mu: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and standard deviation of an equal-weight mixture of N(mu_m, sigma_m^2)
    (members along the first dimension): mu = mean(mu_m), sigma^2 = mean(sigma_m^2 + mu_m^2)
    - mu^2, computed as mean(sigma_m^2) + mean((mu_m - mu)^2) to avoid cancellation."""
    mean = mu.mean(dim=0)
    variance = sigma.square().mean(dim=0) + (mu - mean).square().mean(dim=0)
    return mean, variance.sqrt()


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
        ensemble_size: int = 1,
    ) -> None:
        super().__init__()
        self.ensemble_size = ensemble_size
        layers: list[nn.Module] = []
        width = input_dim
        for size in hidden_sizes:
            layers += [EnsembleLinear(ensemble_size, width, size), ACTIVATIONS[activation]()]
            width = size
        self.body = nn.Sequential(*layers)
        self.mean_head = EnsembleLinear(ensemble_size, width, 1)
        self.scale_head = EnsembleLinear(ensemble_size, width, 1)
        self.link, unit_raw = SCALE_LINKS[scale_link]
        with torch.no_grad():
            self.scale_head.bias.fill_(unit_raw)
        self.sigma_floor = sigma_floor
        # Derived from the hyperparameters, so not saved twice in the state dict.
        self.register_buffer("x_mean", torch.tensor(x_mean), persistent=False)
        self.register_buffer("x_std", torch.tensor(x_std), persistent=False)
        self.y_mean = y_mean
        self.y_std = y_std
        # The variance calibration factor (1: none); saved with the weights.
        self.register_buffer("sigma_scale", torch.tensor(1.0))

    def members(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's (mu_z, sigma_z) in standardised target units, shape [M, B], for
        original-unit inputs x of shape [B, d] (every member sees the same rows) or
        [M, B, d] (a batch per member)."""
        z = (x - self.x_mean) / self.x_std
        if z.dim() == 2:
            z = z.expand(self.ensemble_size, *z.shape)
        hidden = self.body(z)
        mu_z = self.mean_head(hidden).squeeze(-1)
        sigma_z = self.link(self.scale_head(hidden).squeeze(-1)) + self.sigma_floor
        return mu_z, sigma_z

    def forward(self, x: torch.Tensor,
                calibrated: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The predictive (mu, sigma) in original target units for inputs x [B, d]."""
        mu_z, sigma_z = mixture_moments(*self.members(x))
        scale = self.sigma_scale if calibrated else 1.0
        return self.y_mean + self.y_std * mu_z, self.y_std * sigma_z * scale

    def standardise_target(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.y_mean) / self.y_std

    @torch.no_grad()
    def predict(self, features: np.ndarray,
                calibrated: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) in original units, as float64 arrays."""
        self.eval()
        parts = [self(self._tensor(features[start:start + PREDICT_CHUNK]), calibrated)
                 for start in range(0, len(features), PREDICT_CHUNK)]
        mu, sigma = (torch.cat(values) for values in zip(*parts, strict=True))
        return mu.double().numpy(), sigma.double().numpy()

    @torch.no_grad()
    def predict_members(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each member's (mu, sigma) in original units, shape [M, n], sigma times
        sigma_scale: the mixture whose exact density `metrics.mixture_nll` scores."""
        self.eval()
        parts = [self.members(self._tensor(features[start:start + PREDICT_CHUNK]))
                 for start in range(0, len(features), PREDICT_CHUNK)]
        mu_z, sigma_z = (torch.cat(values, dim=1) for values in zip(*parts, strict=True))
        mu = self.y_mean + self.y_std * mu_z
        sigma = self.y_std * sigma_z * self.sigma_scale
        return mu.double().numpy(), sigma.double().numpy()

    @staticmethod
    def _tensor(features: np.ndarray) -> torch.Tensor:
        # torch.tensor copies: the inputs may be a read-only view of a pandas frame.
        return torch.tensor(features, dtype=torch.float32)


def gaussian_nll_z(y_z: torch.Tensor, mu_z: torch.Tensor, sigma_z: torch.Tensor) -> torch.Tensor:
    """Per-point full Gaussian NLL in standardised units (add log(y_std) for original units)."""
    return HALF_LOG_2PI + torch.log(sigma_z) + 0.5 * ((y_z - mu_z) / sigma_z) ** 2


def calibration_factor(y_z: torch.Tensor, mu_z: torch.Tensor, sigma_z: torch.Tensor) -> float:
    """The factor s minimising the Gaussian NLL of N(mu, (s sigma)^2) on (y, mu, sigma):
    d/ds [log s + z^2 / (2 s^2)] = 0 gives s = sqrt(mean(z^2)) with z = (y - mu) / sigma."""
    return float(((y_z - mu_z) / sigma_z).square().mean().sqrt())


NET_ARGS = ("input_dim", "hidden_sizes", "activation", "sigma_floor",
            "x_mean", "x_std", "y_mean", "y_std", "scale_link", "ensemble_size")


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
        raise DeepnormalError(f"checkpoint {path} lacks hyperparameters {missing}; it was "
                              "written by an older deepnormal: retrain it (`dvc repro`)")
    net = DeepNormalNet(**{name: hparams[name] for name in NET_ARGS})
    prefix = "net."
    state = {key.removeprefix(prefix): value
             for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}
    net.load_state_dict(state)
    net.eval()
    # Column names, recorded by training.
    net.feature_names = hparams.get("feature_names")
    net.target_name = hparams.get("target_name")
    return net
