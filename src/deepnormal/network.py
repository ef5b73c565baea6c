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
from deepnormal.family import family_named
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
    settings (config.ModelParams): a new model option is read here and nowhere else. (Which
    numbers are piecewise-linearly encoded is the encoder's: their bin edges come with it,
    fitted where capacity.py says, so a checkpoint alone rebuilds the network.)"""

    def __init__(self, numeric_dim: int, cardinalities: list[int], target_mean: float,
                 target_std: float, settings: ModelParams, family: str = "normal",
                 piecewise: tuple[tuple[int, tuple[float, ...]], ...] = ()) -> None:
        super().__init__()
        self.family = family_named(family)
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
        # Numbers with bin edges (TableEncoder.with_edges) also enter piecewise-linearly
        # encoded, beside their value: a fixed map, shared by the members.
        self.piecewise_positions = [position for position, _ in piecewise]
        self.piecewise = None
        if piecewise:
            from rtdl_num_embeddings import PiecewiseLinearEncoding

            self.piecewise = PiecewiseLinearEncoding(
                [torch.tensor(edges, dtype=torch.float32) for _, edges in piecewise])
            width += sum(len(edges) - 1 for _, edges in piecewise)
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
        # A family's shape (df, skew and tail, P(y = 0)): per row, from the last hidden
        # layer like the location and the scale, or one value per member for the whole
        # table (model.shape). Made last, so the other weights start as for the Normal.
        # A point mass's probability is always per row: whether a row is a zero is what its
        # inputs say most about.
        self.shape_per_row = settings.shape == "per_row" or self.family.point_mass
        shape_count, start = self.family.shape_count, torch.tensor(self.family.shape_init)
        if shape_count and self.shape_per_row:
            self.shape_head = EnsembleLinear(members, width, shape_count)
            with torch.no_grad():
                self.shape_head.bias.copy_(start.expand(members, 1, shape_count))
        elif shape_count:
            self.shape_bias = nn.Parameter(start.repeat(members, 1, 1))
        self.sigma_floor = settings.sigma_floor
        self.y_mean = float(target_mean)
        self.y_std = float(target_std)
        # The variance calibration factor (1: none); saved with the weights.
        self.register_buffer("sigma_scale", torch.tensor(1.0))

    @classmethod
    def for_table(cls, encoder: TableEncoder, settings: ModelParams) -> DeepNormalNet:
        """The network for a fitted table encoder."""
        piecewise = tuple((position, column.edges) for column, position
                          in zip(encoder.numeric, encoder.value_positions, strict=True)
                          if column.edges)
        return cls(encoder.numeric_dim, encoder.cardinalities, encoder.target.mean,
                   encoder.target.std, settings, encoder.target.family, piecewise)

    def inputs(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The first layer's input [M, B, width] from numeric [B, d] or [M, B, d] and codes
        [B, k] or [M, B, k] (every member sees the same rows, or a batch per member)."""
        if self.piecewise is not None:
            values = numeric[..., self.piecewise_positions]
            encoded = self.piecewise(values.reshape(-1, values.shape[-1]))
            numeric = torch.cat([numeric, encoded.reshape(*values.shape[:-1], -1)], dim=-1)
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

    def outputs(self, numeric: torch.Tensor, codes: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Each member's (mu_z, sigma_z) in standardised target units, shape [M, B], and its
        shape parameters [M, B, k] (None for a family without)."""
        hidden = self.body(self.inputs(numeric, codes))
        mu_z = self.mean_head(hidden).squeeze(-1)
        sigma_z = self.link(self.scale_head(hidden).squeeze(-1)) + self.sigma_floor
        if not self.family.shape_count:
            return mu_z, sigma_z, None
        raw = (self.shape_head(hidden) if self.shape_per_row
               else self.shape_bias.expand(*mu_z.shape, -1))
        return mu_z, sigma_z, self.family.shape_link(raw)

    def members(self, numeric: torch.Tensor,
                codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's (mu_z, sigma_z) in standardised target units, shape [M, B]."""
        mu_z, sigma_z, _ = self.outputs(numeric, codes)
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
    def predict_members(self, numeric: np.ndarray, codes: np.ndarray,
                        calibrated: bool = True) -> dict[str, np.ndarray]:
        """Each member's distribution, as the family's constructor takes it (loc, scale and
        shape parameters, each [M, n]), the scale times sigma_scale: the mixture whose exact
        density `metrics.mixture_nll` scores."""
        self.eval()
        count = len(self.family.shape_names)
        parts = [self.outputs(*self._tensors(numeric, codes, start))
                 for start in range(0, len(numeric), PREDICT_CHUNK)]
        if not parts:
            empty = np.zeros((self.ensemble_size, 0))
            return {"loc": empty, "scale": empty} | dict.fromkeys(self.family.shape_names, empty)
        mu_z = torch.cat([part[0] for part in parts], dim=1)
        sigma_z = torch.cat([part[1] for part in parts], dim=1)
        factor = self.sigma_scale if calibrated else 1.0
        found = {"loc": (self.y_mean + self.y_std * mu_z).double().numpy(),
                 "scale": (self.y_std * sigma_z * factor).double().numpy()}
        if count:
            shape = torch.cat([part[2] for part in parts], dim=1).double().numpy()
            found |= {name: shape[..., i] for i, name in enumerate(self.family.shape_names)}
        return found

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


def ensemble_nll_z(family, y_z: torch.Tensor, mu_z: torch.Tensor, sigma_z: torch.Tensor,
                   shape: torch.Tensor | None, mass: torch.Tensor) -> torch.Tensor:
    """Each point's NLL [B] under the ensemble's prediction (members [M, B]), standardised:
    one Gaussian with the members' mean and variance, or their exact mixture, as the family
    says (its `ensemble`)."""
    if family.ensemble == "moments":
        return gaussian_nll_z(y_z, *mixture_moments(mu_z, sigma_z))
    members = family.nll_z(y_z, mu_z, sigma_z, shape, mass)
    return math.log(len(members)) - torch.logsumexp(-members, dim=0)


def calibration_factor_for(family, y_z: torch.Tensor, mu_z: torch.Tensor,
                           sigma_z: torch.Tensor, shape: torch.Tensor | None,
                           mass: torch.Tensor) -> float:
    """The scale factor minimising the ensemble's NLL on (y, members): in closed form for the
    moments families (calibration_factor), else by a golden-section search over log s."""
    if family.ensemble == "moments":
        return calibration_factor(y_z, *mixture_moments(mu_z, sigma_z))

    def nll(log_s: float) -> float:
        scaled = sigma_z * math.exp(log_s)
        return float(ensemble_nll_z(family, y_z, mu_z, scaled, shape, mass).mean())

    low, high, golden = math.log(0.2), math.log(5.0), (math.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = high - golden * (high - low), low + golden * (high - low)
        if nll(a) < nll(b):
            high = b
        else:
            low = a
    return math.exp((low + high) / 2)


def calibration_factor(y_z: torch.Tensor, mu_z: torch.Tensor, sigma_z: torch.Tensor) -> float:
    """The factor s minimising the Gaussian NLL of N(mu, (s sigma)^2) on (y, mu, sigma):
    d/ds [log s + z^2 / (2 s^2)] = 0 gives s = sqrt(mean(z^2)) with z = (y - mu) / sigma."""
    return float(((y_z - mu_z) / sigma_z).square().mean().sqrt())
