"""The predictive families, one class each (predictive.Predictive): its parameters per row
and every score of its distribution, in the target's original units, in numpy and scipy;
beside them each family's torch side (`nll_z`, its NLL on the network's outputs, and
`shape_link`), written with tensor methods so that this module imports torch only when a
network calls them.

The network predicts a location and a scale of a transformed target t = g(y), and for some
families shape parameters:
- `normal`:        g(y) = y      y ~ N(loc, scale^2)
- `lognormal`:     g(y) = log y  y ~ LogNormal(loc, scale^2), a positive, skewed target
- `studentt`:      g(y) = y      heavy tails on both sides (df, learned)
- `johnsonsu`:     g(y) = y      skewed heavy tails on the real line (skew, tail, learned)
- `zerolognormal`: a point mass at zero, P(y = 0) learned, and a log-normal above it
Each family knows its transform and its density's Jacobian (the table encoder standardises
t; training adds log|dt/dy| so that every NLL is of y itself) and its scores: NLL, CRPS (a
closed form, or a numerically exact one), CDF, quantiles, mean, median, std (NaN where a
moment does not exist). The NLL of y is the NLL of t plus log|dt/dy|, so the families
compare on the same scale (a point mass only by CRPS). The rest of the code asks the family
and never branches on its name.
"""

from __future__ import annotations

import numpy as np
from scipy.special import beta, gammaln, ndtr, ndtri, stdtr, stdtrit

from deepnormal.predictive import Predictive

HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)
SQRT_2PI = np.sqrt(2.0 * np.pi)
# Nodes and weights on [-1, 1] for the numerically exact CRPS of a family without a closed
# form, and how far past the bulk (in standard normal units) its integral reaches.
GAUSS_LEGENDRE = np.polynomial.legendre.leggauss(96)
CRPS_REACH = 8.0
# Johnson's S_U: the smallest tail weight (delta) the network may predict; below it the
# quantiles grow too fast for float arithmetic.
TAIL_FLOOR = 0.2


def normal_nll_points(t: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Each point's full Gaussian NLL of t under N(loc, scale^2)."""
    z = (t - loc) / scale
    return HALF_LOG_2PI + np.log(scale) + 0.5 * z**2


def normal_nll_z(y_z, mu_z, sigma_z):
    """The same, on torch tensors (standardised units): tensor methods only, so that this
    module never imports torch."""
    return float(HALF_LOG_2PI) + sigma_z.log() + 0.5 * ((y_z - mu_z) / sigma_z) ** 2


def softplus(raw):
    import torch.nn.functional as F

    return F.softplus(raw)


def normal_crps(y: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Closed form CRPS of N(loc, scale^2) at y (Gneiting & Raftery 2007), per point."""
    z = (y - loc) / scale
    pdf = np.exp(-0.5 * z**2) / np.sqrt(2.0 * np.pi)
    return scale * (z * (2.0 * ndtr(z) - 1.0) + 2.0 * pdf - 1.0 / np.sqrt(np.pi))


class Normal(Predictive):
    """y ~ N(loc, scale^2)."""

    name = "normal"
    support = "any real number"
    columns = ("mu", "sigma")
    shape_count = 0  # network outputs beyond the location and the scale
    ensemble = "moments"  # the members predicted as one Normal: the mixture's mean and variance

    def __init__(self, loc, scale) -> None:
        self.loc = np.asarray(loc, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)

    # --- the torch side: the network's outputs, in standardised units -----------------
    shape_names: tuple[str, ...] = ()  # the constructor's names of the shape outputs
    shape_init: tuple[float, ...] = ()  # their initial raw values (the heads' biases)

    @staticmethod
    def shape_link(raw):
        """Raw shape outputs [..., k] -> the shape parameters (positive where they must be)."""
        return raw

    @staticmethod
    def nll_z(y_z, mu_z, sigma_z, shape, mass):
        """Each point's NLL in standardised units (tensors; `shape` [..., k] linked, `mass`
        where y is on a point mass); adding log(std) and the Jacobian gives the NLL of y."""
        return normal_nll_z(y_z, mu_z, sigma_z)

    @staticmethod
    def transform(y: np.ndarray) -> np.ndarray:
        """t = g(y), the scale the network models."""
        return np.asarray(y, dtype=np.float64)

    @staticmethod
    def log_jacobian(y: np.ndarray) -> np.ndarray:
        """log|dt/dy| per point, added to the NLL of t to give the NLL of y."""
        return np.zeros(np.shape(y))

    @staticmethod
    def invalid_target(y: np.ndarray) -> np.ndarray:
        return np.zeros(np.shape(y), dtype=bool)

    def parameters(self) -> dict[str, np.ndarray]:
        return {"mu": self.loc, "sigma": self.scale}

    def arguments(self) -> dict[str, np.ndarray]:
        return {"loc": self.loc, "scale": self.scale}

    def nll_points(self, y) -> np.ndarray:
        return normal_nll_points(self.transform(y), self.loc, self.scale)

    def cdf(self, y) -> np.ndarray:
        return ndtr((y - self.loc) / self.scale)

    def quantile(self, level) -> np.ndarray:
        return self.loc + self.scale * ndtri(level)

    def mean(self) -> np.ndarray:
        return self.loc

    def std(self) -> np.ndarray:
        return self.scale

    def crps(self, y) -> np.ndarray:
        return normal_crps(y, self.loc, self.scale)


class LogNormal(Predictive):
    """log y ~ N(loc, scale^2): a positive target, skewed to the right."""

    name = "lognormal"
    support = "positive numbers"
    columns = ("mu", "sigma")
    shape_count = 0
    ensemble = "moments"  # of log y
    shape_names, shape_init = Normal.shape_names, Normal.shape_init
    shape_link = staticmethod(Normal.shape_link)
    nll_z = staticmethod(Normal.nll_z)  # of log y

    def __init__(self, loc, scale) -> None:
        self.loc = np.asarray(loc, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)

    @staticmethod
    def transform(y: np.ndarray) -> np.ndarray:
        return np.log(np.asarray(y, dtype=np.float64))

    @staticmethod
    def log_jacobian(y: np.ndarray) -> np.ndarray:
        # t = log y, dt/dy = 1/y: NLL(y) = NLL(log y) + log y.
        return np.log(np.asarray(y, dtype=np.float64))

    @staticmethod
    def invalid_target(y: np.ndarray) -> np.ndarray:
        return ~(np.asarray(y, dtype=np.float64) > 0)

    def parameters(self) -> dict[str, np.ndarray]:
        return {"mu": self.loc, "sigma": self.scale}

    def arguments(self) -> dict[str, np.ndarray]:
        return {"loc": self.loc, "scale": self.scale}

    def nll_points(self, y) -> np.ndarray:
        return normal_nll_points(self.transform(y), self.loc, self.scale) + self.log_jacobian(y)

    def cdf(self, y) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(y > 0, ndtr((np.log(y) - self.loc) / self.scale), 0.0)

    def quantile(self, level) -> np.ndarray:
        return np.exp(self.loc + self.scale * ndtri(level))

    def mean(self) -> np.ndarray:
        return np.exp(self.loc + 0.5 * np.square(self.scale))

    def std(self) -> np.ndarray:
        variance_factor = np.expm1(np.square(self.scale))
        return np.exp(self.loc + 0.5 * np.square(self.scale)) * np.sqrt(variance_factor)

    def crps(self, y) -> np.ndarray:
        """Closed form CRPS at y > 0 (Baran & Lerch 2015):
        y (2 Phi(w) - 1) - 2 exp(loc + scale^2/2) (Phi(w - scale) + Phi(scale/sqrt 2) - 1),
        w = (log y - loc) / scale."""
        loc, scale = self.loc, self.scale
        w = (np.log(y) - loc) / scale
        mean = np.exp(loc + 0.5 * np.square(scale))
        return y * (2.0 * ndtr(w) - 1.0) - 2.0 * mean * (
            ndtr(w - scale) + ndtr(scale / np.sqrt(2.0)) - 1.0)


class RealLine(Predictive):
    """What the families of a target of any sign share with the Normal: no transform, no
    Jacobian, every number a valid target; an ensemble's exact mixture as the prediction."""

    support = "any real number"
    ensemble = "mixture"
    transform = staticmethod(Normal.transform)
    log_jacobian = staticmethod(Normal.log_jacobian)
    invalid_target = staticmethod(Normal.invalid_target)


class StudentT(RealLine):
    """y ~ loc + scale * t(df): heavy tails on both sides (delays, returns, errors). The
    mean exists for df > 1, the variance for df > 2 (NaN where it does not: never inf); the
    network keeps df above 1, where the CRPS is finite."""

    name = "studentt"
    columns = ("mu", "sigma", "df")
    shape_count = 1

    def __init__(self, loc, scale, df) -> None:
        self.loc = np.asarray(loc, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.df = np.asarray(df, dtype=np.float64)

    shape_names = ("df",)
    shape_init = (9.0,)  # df = 1 + softplus(9.0): about 10, a mild tail to start from

    @staticmethod
    def shape_link(raw):
        return 1.0 + softplus(raw)

    @staticmethod
    def nll_z(y_z, mu_z, sigma_z, shape, mass):
        v = shape[..., 0]
        z = (y_z - mu_z) / sigma_z
        return (-((v + 1) / 2).lgamma() + (v / 2).lgamma() + 0.5 * (v * np.pi).log()
                + sigma_z.log() + (v + 1) / 2 * (z.square() / v).log1p())

    def parameters(self) -> dict[str, np.ndarray]:
        return {"mu": self.loc, "sigma": self.scale, "df": self.df}

    def arguments(self) -> dict[str, np.ndarray]:
        return {"loc": self.loc, "scale": self.scale, "df": self.df}

    def nll_points(self, y) -> np.ndarray:
        z = (np.asarray(y, dtype=np.float64) - self.loc) / self.scale
        v = self.df
        return (-gammaln((v + 1) / 2) + gammaln(v / 2) + 0.5 * np.log(v * np.pi)
                + np.log(self.scale) + (v + 1) / 2 * np.log1p(z**2 / v))

    def cdf(self, y) -> np.ndarray:
        return stdtr(self.df, (y - self.loc) / self.scale)

    def quantile(self, level) -> np.ndarray:
        return self.loc + self.scale * stdtrit(self.df, level)

    def mean(self) -> np.ndarray:
        return np.where(self.df > 1, self.loc, np.nan)

    def std(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.df > 2, self.scale * np.sqrt(self.df / (self.df - 2)), np.nan)

    def crps(self, y) -> np.ndarray:
        """Closed form for df > 1 (Jordan, Krueger & Lerch 2019, scoringRules' crps_t)."""
        v, z = self.df, (y - self.loc) / self.scale
        density = np.exp(gammaln((v + 1) / 2) - gammaln(v / 2)
                         - 0.5 * np.log(v * np.pi) - (v + 1) / 2 * np.log1p(z**2 / v))
        constant = 2 * np.sqrt(v) * beta(0.5, v - 0.5) / ((v - 1) * beta(0.5, v / 2) ** 2)
        return self.scale * (z * (2 * stdtr(v, z) - 1) + 2 * density * (v + z**2) / (v - 1)
                             - constant)


class JohnsonSU(RealLine):
    """Johnson's S_U: gamma + delta * asinh((y - loc) / (scale * delta)) ~ N(0, 1). Skew
    (`skew`, any sign) and tails heavier than a Normal's (`tail` small) on the whole real
    line, as GAMLSS's JSU; with skew 0 and a large tail it becomes N(loc, scale^2). Every
    moment exists."""

    name = "johnsonsu"
    columns = ("mu", "sigma", "skew", "tail")
    shape_count = 2

    def __init__(self, loc, scale, skew, tail) -> None:
        self.loc = np.asarray(loc, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.skew = np.asarray(skew, dtype=np.float64)
        self.tail = np.asarray(tail, dtype=np.float64)

    shape_names = ("skew", "tail")
    # skew 0; tail = TAIL_FLOOR + softplus(1.6), about 2: a start near the Normal, tails a
    # little heavier.
    shape_init = (0.0, 1.6)

    @staticmethod
    def shape_link(raw):
        import torch

        return torch.stack([raw[..., 0], TAIL_FLOOR + softplus(raw[..., 1])], dim=-1)

    @staticmethod
    def nll_z(y_z, mu_z, sigma_z, shape, mass):
        skew, tail = shape[..., 0], shape[..., 1]
        width = sigma_z * tail
        x = (y_z - mu_z) / width
        z = skew + tail * x.asinh()
        return (float(HALF_LOG_2PI) - tail.log() + width.log() + 0.5 * x.square().log1p()
                + 0.5 * z.square())

    @property
    def width(self) -> np.ndarray:
        """lambda: the scale of the asinh's argument."""
        return self.scale * self.tail

    def parameters(self) -> dict[str, np.ndarray]:
        return {"mu": self.loc, "sigma": self.scale, "skew": self.skew, "tail": self.tail}

    def arguments(self) -> dict[str, np.ndarray]:
        return {"loc": self.loc, "scale": self.scale, "skew": self.skew, "tail": self.tail}

    def _z(self, y) -> np.ndarray:
        return self.skew + self.tail * np.arcsinh((y - self.loc) / self.width)

    def nll_points(self, y) -> np.ndarray:
        x = (np.asarray(y, dtype=np.float64) - self.loc) / self.width
        z = self.skew + self.tail * np.arcsinh(x)
        return (HALF_LOG_2PI - np.log(self.tail) + np.log(self.width)
                + 0.5 * np.log1p(x**2) + 0.5 * z**2)

    def cdf(self, y) -> np.ndarray:
        return ndtr(self._z(y))

    def _at(self, u) -> np.ndarray:
        """The quantile at Phi(u)."""
        return self.loc + self.width * np.sinh((u - self.skew) / self.tail)

    def quantile(self, level) -> np.ndarray:
        return self._at(ndtri(level))

    def mean(self) -> np.ndarray:
        with np.errstate(over="ignore"):
            return self.loc - self.width * np.exp(0.5 / self.tail**2) * np.sinh(
                self.skew / self.tail)

    def std(self) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            w = np.exp(1.0 / self.tail**2)
            return self.width * np.sqrt(0.5 * (w - 1) * (w * np.cosh(2 * self.skew / self.tail)
                                                         + 1))

    def crps(self, y) -> np.ndarray:
        """The quantile form on the normal scale u (the level is Phi(u)), split where the
        quantile passes y, each side by Gauss-Legendre: numerically exact (to 1e-8 relative
        in tests/test_families.py)."""
        y = np.asarray(y, dtype=np.float64)
        u_y = self._z(y)
        reach = CRPS_REACH + 1.0 / self.tail  # heavy tails peak further out
        nodes, weights = GAUSS_LEGENDRE
        total = np.zeros(np.broadcast_shapes(y.shape, self.loc.shape))
        for low, high, below in ((np.minimum(u_y, -reach), u_y, True),
                                 (u_y, np.maximum(u_y, reach), False)):
            half = (high - low) / 2
            for node, weight in zip(nodes, weights, strict=True):
                u = low + half * (node + 1)
                gap = self._at(u) - y
                tail = ndtr(u) if below else ndtr(-u)
                total += weight * half * np.abs(gap) * tail * np.exp(-0.5 * u**2) / SQRT_2PI
        return 2.0 * total


class ZeroLogNormal(Predictive):
    """A point mass at zero and a log-normal above it (a hurdle): P(y = 0) = p_zero, and
    log y ~ N(loc, scale^2) for y > 0. For amounts with many exact zeros (spending, hours
    worked, rain). Its NLL at y = 0 is a probability's, a density's above: it compares with
    a continuous family by CRPS, not by NLL."""

    name = "zerolognormal"
    support = "numbers of zero or more"
    columns = ("p_zero", "mu", "sigma")
    shape_count = 1
    ensemble = "mixture"
    point_mass = True

    def __init__(self, p_zero, loc, scale) -> None:
        self.p_zero = np.asarray(p_zero, dtype=np.float64)
        self.loc = np.asarray(loc, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)

    @staticmethod
    def transform(y: np.ndarray) -> np.ndarray:
        """log y above zero; zero rows (the point mass) NaN: they carry no density."""
        y = np.asarray(y, dtype=np.float64)
        with np.errstate(divide="ignore"):
            return np.where(y > 0, np.log(np.where(y > 0, y, 1.0)), np.nan)

    @staticmethod
    def log_jacobian(y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        return np.where(y > 0, np.log(np.where(y > 0, y, 1.0)), 0.0)

    @staticmethod
    def invalid_target(y: np.ndarray) -> np.ndarray:
        return ~(np.asarray(y, dtype=np.float64) >= 0)

    @staticmethod
    def in_mass(y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float64) == 0

    shape_names = ("p_zero",)
    shape_init = (0.0,)  # P(y = 0) = 1/2 to start

    @staticmethod
    def shape_link(raw):
        return raw.sigmoid()

    @staticmethod
    def nll_z(y_z, mu_z, sigma_z, shape, mass):
        """-log p at zero; -log(1 - p) plus the log-normal's density above (its y_z is of
        log y, and placeholder 0 at the zeros, where it is not used)."""
        p = shape[..., 0].clamp(1e-6, 1 - 1e-6)
        positive = -(1 - p).log() + normal_nll_z(y_z, mu_z, sigma_z)
        return mass * -p.log() + (1 - mass) * positive

    def parameters(self) -> dict[str, np.ndarray]:
        return {"p_zero": self.p_zero, "mu": self.loc, "sigma": self.scale}

    def arguments(self) -> dict[str, np.ndarray]:
        return {"p_zero": self.p_zero, "loc": self.loc, "scale": self.scale}

    def _positive(self) -> LogNormal:
        return LogNormal(self.loc, self.scale)

    def continuous_part(self) -> LogNormal:
        return self._positive()

    def nll_points(self, y) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        zero = y == 0
        with np.errstate(divide="ignore", invalid="ignore"):
            positive = -np.log1p(-self.p_zero) + self._positive().nll_points(np.where(zero, 1.0,
                                                                                      y))
            return np.where(zero, -np.log(self.p_zero), positive)

    def cdf(self, y) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            above = self._positive().cdf(np.where(y > 0, y, 1.0))
        return np.where(y < 0, 0.0, self.p_zero + (1 - self.p_zero) * np.where(y > 0, above, 0))

    def quantile(self, level) -> np.ndarray:
        level = np.asarray(level, dtype=np.float64)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            inner = np.clip((level - self.p_zero) / (1 - self.p_zero), 1e-300, 1.0)
            return np.where(level <= self.p_zero, 0.0, self._positive().quantile(inner))

    def mean(self) -> np.ndarray:
        with np.errstate(over="ignore"):
            return (1 - self.p_zero) * self._positive().mean()

    def std(self) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            second = (1 - self.p_zero) * np.exp(2 * self.loc + 2 * self.scale**2)
            return np.sqrt(np.maximum(second - self.mean() ** 2, 0.0))

    def crps(self, y) -> np.ndarray:
        """E|X - y| - E|X - X'| / 2 with X zero with probability p, else log-normal L:
        p |y| + (1 - p) E|L - y| - p (1 - p) E L - (1 - p)^2 E|L - L'| / 2, where
        E|L - L'| = 2 E L (2 Phi(scale / sqrt 2) - 1) and E|L - y| = CRPS_L(y) + E|L - L'| / 2."""
        y = np.asarray(y, dtype=np.float64)
        p, positive = self.p_zero, self._positive()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            mean = positive.mean()
            spread = 2 * mean * (2 * ndtr(self.scale / np.sqrt(2.0)) - 1)
            at_zero = 2 * mean * (1 - ndtr(self.scale / np.sqrt(2.0)))  # CRPS_L(0)
            crps_l = np.where(y > 0, positive.crps(np.where(y > 0, y, 1.0)), at_zero)
        return (p * np.abs(y) + (1 - p) * (crps_l + spread / 2) - p * (1 - p) * mean
                - (1 - p) ** 2 * spread / 2)


FAMILIES: dict[str, type[Predictive]] = {family.name: family for family in (
    Normal, LogNormal, StudentT, JohnsonSU, ZeroLogNormal)}


def family_named(name: str) -> type[Predictive]:
    """The family class for a model.distribution name (resolved: never `auto`)."""
    return FAMILIES[name]
