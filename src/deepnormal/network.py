"""The deep normal network: a deep ensemble of mean-variance MLPs. Torch and the table encoder
(no Lightning), so evaluation and serving never import Lightning.

    encoded table (preprocessing.TableEncoder: standardised numbers, "was empty" flags,
    category codes) -> categories one-hot or embedded -> M member MLPs, run as one batched
    network -> per member: mu_z, sigma_z = link(raw) + sigma_floor  (standardised units)
    -> one Gaussian: the mixture's mean and variance (moment matching)
    -> the transformed target's units (log y for the log-normal family), sigma times the
       calibration factor sigma_scale.

M = model.ensemble_size members (Lakshminarayanan et al. 2017) have their own weights,
initialisation and batch order; stacked into [M, in, out] tensors they train as one network
with batched matrix products, so M = 5 costs far less than five trainings. M = 1 is the
single model. The network's sizes come from the table encoder fitted on the training split;
sigma_scale is a buffer fitted on the validation split (see `calibration_factor`); so a
checkpoint (weights, encoder, settings) alone reproduces predictions.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deepnormal.config import ModelParams
from deepnormal.preprocessing import TableEncoder

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


class EnsembleEmbedding(nn.Module):
    """A learned embedding table per member: codes [M, B] -> [M, B, dim]."""

    def __init__(self, members: int, categories: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(members, categories, dim))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        members = torch.arange(self.weight.shape[0], device=codes.device)[:, None]
        return self.weight[members, codes]


class DeepNormalNet(nn.Module):
    """Built from the table's input sizes, the target's standardisation and the model's
    settings (config.ModelParams): a new model option is read here and nowhere else."""

    def __init__(self, numeric_dim: int, cardinalities: list[int], target_mean: float,
                 target_std: float, settings: ModelParams) -> None:
        super().__init__()
        members, embedding_dim = settings.ensemble_size, settings.embedding_dim
        self.ensemble_size = members
        # A column with at most embedding_dim codes is one-hot (its first-layer weights are
        # its embedding); a larger one gets a learned embedding of embedding_dim numbers.
        self.cardinalities = list(cardinalities)
        self.embeddings = nn.ModuleDict({
            str(j): EnsembleEmbedding(members, size, embedding_dim)
            for j, size in enumerate(self.cardinalities) if size > embedding_dim})
        width = numeric_dim + sum(
            embedding_dim if size > embedding_dim else size for size in self.cardinalities)
        layers: list[nn.Module] = []
        for size in settings.hidden_sizes:
            layers += [EnsembleLinear(members, width, size), ACTIVATIONS[settings.activation]()]
            width = size
        self.body = nn.Sequential(*layers)
        self.mean_head = EnsembleLinear(members, width, 1)
        self.scale_head = EnsembleLinear(members, width, 1)
        self.link, unit_raw = SCALE_LINKS[settings.scale_link]
        with torch.no_grad():
            self.scale_head.bias.fill_(unit_raw)
        self.sigma_floor = settings.sigma_floor
        self.y_mean = float(target_mean)
        self.y_std = float(target_std)
        # The variance calibration factor (1: none); saved with the weights.
        self.register_buffer("sigma_scale", torch.tensor(1.0))

    @classmethod
    def for_table(cls, encoder: TableEncoder, settings: ModelParams) -> DeepNormalNet:
        """The network for a fitted table encoder."""
        return cls(encoder.numeric_dim, encoder.cardinalities, encoder.target.mean,
                   encoder.target.std, settings)

    def inputs(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The first layer's input [M, B, width] from numeric [B, d] or [M, B, d] and codes
        [B, k] or [M, B, k] (every member sees the same rows, or a batch per member)."""
        if numeric.dim() == 2:
            numeric = numeric.expand(self.ensemble_size, *numeric.shape)
            codes = codes.expand(self.ensemble_size, *codes.shape)
        parts = [numeric]
        for j, size in enumerate(self.cardinalities):
            embedding = self.embeddings[str(j)] if str(j) in self.embeddings else None
            column = codes[..., j]
            parts.append(embedding(column) if embedding is not None
                         else F.one_hot(column, size).to(numeric.dtype))
        return torch.cat(parts, dim=-1)

    def members(self, numeric: torch.Tensor,
                codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's (mu_z, sigma_z) in standardised target units, shape [M, B]."""
        hidden = self.body(self.inputs(numeric, codes))
        mu_z = self.mean_head(hidden).squeeze(-1)
        sigma_z = self.link(self.scale_head(hidden).squeeze(-1)) + self.sigma_floor
        return mu_z, sigma_z

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor,
                calibrated: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The predictive Normal (loc, scale) of the transformed target, for inputs [B, ...]."""
        mu_z, sigma_z = mixture_moments(*self.members(numeric, codes))
        scale = self.sigma_scale if calibrated else 1.0
        return self.y_mean + self.y_std * mu_z, self.y_std * sigma_z * scale

    @torch.no_grad()
    def predict(self, numeric: np.ndarray, codes: np.ndarray,
                calibrated: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(loc, scale) of the transformed target, as float64 arrays, in chunks."""
        self.eval()
        if len(numeric) == 0:  # a header alone, an empty request
            return np.zeros(0), np.zeros(0)
        parts = [self(*self._tensors(numeric, codes, start), calibrated)
                 for start in range(0, len(numeric), PREDICT_CHUNK)]
        loc, scale = (torch.cat(values) for values in zip(*parts, strict=True))
        return loc.double().numpy(), scale.double().numpy()

    @torch.no_grad()
    def predict_members(self, numeric: np.ndarray,
                        codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each member's (loc, scale), shape [M, n], scale times sigma_scale: the mixture
        whose exact density `metrics.mixture_nll` scores."""
        self.eval()
        if len(numeric) == 0:
            return np.zeros((self.ensemble_size, 0)), np.zeros((self.ensemble_size, 0))
        parts = [self.members(*self._tensors(numeric, codes, start))
                 for start in range(0, len(numeric), PREDICT_CHUNK)]
        mu_z, sigma_z = (torch.cat(values, dim=1) for values in zip(*parts, strict=True))
        loc = self.y_mean + self.y_std * mu_z
        scale = self.y_std * sigma_z * self.sigma_scale
        return loc.double().numpy(), scale.double().numpy()

    @staticmethod
    def _tensors(numeric: np.ndarray, codes: np.ndarray,
                 start: int) -> tuple[torch.Tensor, torch.Tensor]:
        # torch.tensor copies: the inputs may be read-only views.
        end = start + PREDICT_CHUNK
        return (torch.tensor(numeric[start:end], dtype=torch.float32),
                torch.tensor(codes[start:end], dtype=torch.int64))


def gaussian_nll_z(y_z: torch.Tensor, mu_z: torch.Tensor, sigma_z: torch.Tensor) -> torch.Tensor:
    """Per-point full Gaussian NLL in standardised units (add log(y_std) for original units)."""
    return HALF_LOG_2PI + torch.log(sigma_z) + 0.5 * ((y_z - mu_z) / sigma_z) ** 2


def calibration_factor(y_z: torch.Tensor, mu_z: torch.Tensor, sigma_z: torch.Tensor) -> float:
    """The factor s minimising the Gaussian NLL of N(mu, (s sigma)^2) on (y, mu, sigma):
    d/ds [log s + z^2 / (2 s^2)] = 0 gives s = sqrt(mean(z^2)) with z = (y - mu) / sigma."""
    return float(((y_z - mu_z) / sigma_z).square().mean().sqrt())
