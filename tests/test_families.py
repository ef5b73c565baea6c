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


def test_quantiles_invert_the_cdf_and_bound_the_intervals(predictive):
    for level in LEVELS:
        np.testing.assert_allclose(predictive.cdf(predictive.quantile(level)), level, rtol=1e-9)
    np.testing.assert_allclose(predictive.median(), predictive.quantile(0.5))
    low, high = predictive.interval(0.8)
    np.testing.assert_allclose(low, predictive.quantile(0.1))
    np.testing.assert_allclose(high, predictive.quantile(0.9))
    # Draws from the distribution lie in its support.
    draws = predictive.quantile(np.random.default_rng(0).uniform(size=(200, 1)))
    assert not predictive.invalid_target(draws).any()


def test_the_density_is_the_derivative_of_the_cdf(predictive):
    y = predictive.quantile(LEVELS[:, None])  # [levels, rows]
    step = 1e-5 * np.maximum(np.abs(y), 1.0)
    numeric = (predictive.cdf(y + step) - predictive.cdf(y - step)) / (2 * step)
    np.testing.assert_allclose(np.exp(-predictive.nll_points(y)), numeric, rtol=1e-5)


def test_mean_and_std_are_the_moments_of_the_quantile_function(predictive):
    for i in range(len(EXAMPLES[predictive.name]["loc"])):
        one = row(predictive, i)

        def moment(power, one=one):
            return integrate.quad(lambda p: float(one.quantile(p)[0]) ** power, 0, 1,
                                  limit=400)[0]

        mean = moment(1)
        assert one.mean()[0] == pytest.approx(mean, rel=1e-5)
        assert one.std()[0] == pytest.approx(np.sqrt(moment(2) - mean**2), rel=1e-4)


def test_crps_is_the_integral_of_the_squared_cdf_difference(predictive):
    for i in range(len(EXAMPLES[predictive.name]["loc"])):
        one = row(predictive, i)
        low, high = (float(v[0]) for v in one.interval(1 - 1e-12))
        for y in (float(one.quantile(0.2)[0]), float(one.quantile(0.95)[0])):
            def integrand(t, y=y, one=one):
                return (float(one.cdf(np.array([t]))[0]) - (t >= y)) ** 2

            numeric = sum(integrate.quad(integrand, a, b, limit=400)[0]
                          for a, b in ((low, y), (y, high)))
            assert one.crps(np.array([y]))[0] == pytest.approx(numeric, rel=1e-5)


def test_the_output_frame_has_the_declared_columns(predictive):
    frame = predictive.frame([0.5, 0.95])
    assert list(frame.columns) == predictive.output_columns([0.5, 0.95])
    assert len(frame) == len(EXAMPLES[predictive.name]["loc"])
    assert np.isfinite(frame.to_numpy()).all()


def test_a_mixture_of_one_member_is_that_member(predictive):
    y = predictive.quantile(0.3)
    members = type(predictive)(**{key: np.array(value)[None]
                                  for key, value in EXAMPLES[predictive.name].items()})
    assert metrics.mixture_nll(y, members) == pytest.approx(metrics.nll(y, predictive),
                                                            rel=1e-12)
