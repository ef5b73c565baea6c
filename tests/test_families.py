"""The contract every predictive family keeps (family.py): its density, CDF, quantiles,
moments, CRPS and output columns agree with each other and with numerical integration. A new
family joins FAMILIES, gets parameters in EXAMPLES, and is checked here like the others."""

import numpy as np
import pytest
from scipy import integrate

from deepnormal import metrics
from deepnormal.family import FAMILIES, family_named
from deepnormal.predictive import Predictive

# Example parameters per family (a few rows each, of the kinds a network predicts).
EXAMPLES = {
    "normal": {"loc": [-1.0, 0.5, 20.0], "scale": [0.3, 1.0, 4.0]},
    "lognormal": {"loc": [0.0, 2.0, 5.0], "scale": [0.2, 0.7, 1.1]},
    "studentt": {"loc": [-1.0, 0.5, 20.0], "scale": [0.3, 1.0, 4.0], "df": [1.5, 3.5, 40.0]},
    "johnsonsu": {"loc": [-1.0, 0.5, 20.0], "scale": [0.3, 1.0, 4.0], "skew": [-1.0, 0.0, 2.0],
                  "tail": [0.5, 1.5, 8.0]},
    "zerolognormal": {"p_zero": [0.05, 0.3, 0.7], "loc": [0.0, 2.0, 5.0],
                      "scale": [0.2, 0.7, 1.1]},
}
LEVELS = np.array([0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99])


def example(name: str) -> Predictive:
    return family_named(name)(**{key: np.array(value) for key, value in EXAMPLES[name].items()})


def row(predictive: Predictive, i: int) -> Predictive:
    """One row of a distribution as a distribution."""
    return type(predictive)(**{key: np.array([value[i]]) for key, value in
                               EXAMPLES[predictive.name].items()})


def test_every_family_has_examples_here():
    assert set(FAMILIES) == set(EXAMPLES)


@pytest.fixture(params=sorted(FAMILIES))
def predictive(request) -> Predictive:
    return example(request.param)


def above_mass(predictive: Predictive) -> np.ndarray:
    """Levels [levels, rows] inside the continuous part (above a point mass's probability)."""
    mass = getattr(predictive, "p_zero", np.zeros(len(EXAMPLES[predictive.name]["loc"])))
    return mass + (1 - mass) * LEVELS[:, None]


def test_quantiles_invert_the_cdf_and_bound_the_intervals(predictive):
    levels = above_mass(predictive)
    np.testing.assert_allclose(predictive.cdf(predictive.quantile(levels)), levels, rtol=1e-9)
    np.testing.assert_allclose(predictive.median(), predictive.quantile(0.5))
    low, high = predictive.interval(0.8)
    # Central; with a point mass at zero over the lower tail, from zero to the 80% quantile:
    # either way the interval holds 80% of the probability.
    starts = predictive.point_mass & (predictive.cdf(np.zeros(len(low))) >= 0.1)
    np.testing.assert_allclose(low, np.where(starts, 0.0, predictive.quantile(0.1)))
    np.testing.assert_allclose(high, np.where(starts, predictive.quantile(0.8),
                                              predictive.quantile(0.9)))
    held = predictive.cdf(high) - np.where(starts, 0.0, predictive.cdf(low))
    np.testing.assert_allclose(held, 0.8, rtol=1e-9)
    # Draws from the distribution lie in its support.
    draws = predictive.quantile(np.random.default_rng(0).uniform(size=(200, 1)))
    assert not predictive.invalid_target(draws).any()


def test_the_density_is_the_derivative_of_the_cdf(predictive):
    y = predictive.quantile(above_mass(predictive))  # [levels, rows]
    step = 1e-5 * np.maximum(np.abs(y), 1.0)
    numeric = (predictive.cdf(y + step) - predictive.cdf(y - step)) / (2 * step)
    np.testing.assert_allclose(np.exp(-predictive.nll_points(y)), numeric, rtol=1e-5)


def test_mean_and_std_are_the_moments_of_the_quantile_function(predictive):
    for i in range(len(EXAMPLES[predictive.name]["loc"])):
        one = row(predictive, i)

        def moment(power, one=one):
            return integrate.quad(lambda p: float(one.quantile(p)[0]) ** power, 0, 1,
                                  limit=400)[0]

        if not np.isfinite(one.std()[0]):  # a t with df <= 2: no variance, said as NaN
            assert one.name == "studentt" and one.df[0] <= 2 and np.isnan(one.std()[0])
            continue
        mean = moment(1)
        assert one.mean()[0] == pytest.approx(mean, rel=1e-5)
        assert one.std()[0] == pytest.approx(np.sqrt(moment(2) - mean**2), rel=1e-4)


def test_crps_is_the_integral_of_the_squared_cdf_difference(predictive):
    for i in range(len(EXAMPLES[predictive.name]["loc"])):
        one = row(predictive, i)
        for y in (float(one.quantile(0.2)[0]), float(one.quantile(0.95)[0])):
            def integrand(t, y=y, one=one):
                return (float(one.cdf(np.array([t]))[0]) - (t >= y)) ** 2

            # Pieces split where the integrand jumps (y, and a point mass at 0).
            cuts = sorted({-np.inf, y, np.inf} | ({0.0} if one.point_mass else set()))
            numeric = sum(integrate.quad(integrand, a, b, limit=400)[0]
                          for a, b in zip(cuts, cuts[1:], strict=False) if a < b)
            assert one.crps(np.array([y]))[0] == pytest.approx(numeric, rel=1e-5)


def test_the_output_frame_has_the_declared_columns(predictive):
    frame = predictive.frame([0.5, 0.95])
    assert list(frame.columns) == predictive.output_columns([0.5, 0.95])
    assert len(frame) == len(EXAMPLES[predictive.name]["loc"])
    # Every value exists, but a std the family does not have (a t with df <= 2): empty.
    missing = ~np.isfinite(frame.to_numpy())
    assert list(zip(*np.nonzero(missing), strict=True)) == [
        (i, list(frame.columns).index("std")) for i, df in
        enumerate(EXAMPLES[predictive.name].get("df", [])) if df <= 2]


def test_a_mixture_is_exact_and_of_one_member_is_that_member(predictive):
    from deepnormal.predictive import Mixture

    one = Mixture(type(predictive)(**{key: np.array(value)[None]
                                      for key, value in EXAMPLES[predictive.name].items()}))
    y = predictive.quantile(above_mass(predictive)[3])
    for method in ("nll_points", "cdf", "crps"):
        np.testing.assert_allclose(getattr(one, method)(y), getattr(predictive, method)(y),
                                   rtol=1e-6, err_msg=method)
    levels = above_mass(predictive)[2]
    np.testing.assert_allclose(one.quantile(levels), predictive.quantile(levels), rtol=1e-9)
    np.testing.assert_allclose(one.mean(), predictive.mean(), rtol=1e-12)
    # Two members: the quantiles invert the mixture's CDF, the CRPS is its integral.
    two = Mixture(type(predictive)(**{key: np.stack([np.array(value), np.array(value) * 1.3])
                                      for key, value in EXAMPLES[predictive.name].items()}))
    mass = two.cdf(np.zeros(len(y))) if predictive.point_mass else 0.0
    levels = mass + (1 - mass) * 0.72  # above a point mass, where the CDF is continuous
    np.testing.assert_allclose(two.cdf(two.quantile(levels)), levels, rtol=1e-9)
    first = two.take([0])
    point = np.array([float(first.quantile(np.array([0.6]))[0])])
    cuts = sorted({-np.inf, 0.0, point[0], np.inf})
    numeric = sum(integrate.quad(
        lambda t: (float(first.cdf(np.array([t]))[0]) - (t >= point[0])) ** 2, a, b,
        limit=400)[0] for a, b in zip(cuts, cuts[1:], strict=False))
    assert first.crps(point)[0] == pytest.approx(numeric, rel=1e-4)


def test_a_mixture_of_one_member_is_that_member(predictive):
    y = predictive.quantile(0.3)
    members = type(predictive)(**{key: np.array(value)[None]
                                  for key, value in EXAMPLES[predictive.name].items()})
    assert metrics.mixture_nll(y, members) == pytest.approx(metrics.nll(y, predictive),
                                                            rel=1e-12)
