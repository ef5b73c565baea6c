import numpy as np
import pytest
from scipy import integrate, stats

from deepnormal import metrics, synthetic
from deepnormal.baselines import LinearGaussian
from deepnormal.config import GenerateParams
from deepnormal.family import LogNormal, Normal

# Expected values for the true predictive of the reference process (GUIDE section 2).
ORACLE_NLL, ORACLE_CRPS, ORACLE_COVERAGE_95 = 0.8459, 0.5642, 0.9545


@pytest.fixture(scope="module")
def reference_sample():
    p = GenerateParams(n=400_000, seed=11)
    x, y = synthetic.sample(p)
    return y, synthetic.true_mean(x, p), synthetic.true_sigma(x, p)


def test_true_predictive_matches_the_known_scores(reference_sample):
    y, mu, sigma = reference_sample
    assert metrics.nll(y, Normal(mu, sigma)) == pytest.approx(ORACLE_NLL, abs=0.01)
    assert np.mean(Normal(mu, sigma).crps(y)) == pytest.approx(ORACLE_CRPS, abs=0.005)
    assert metrics.coverage(y, Normal(mu, sigma), 0.9545) == pytest.approx(ORACLE_COVERAGE_95,
                                                                          abs=0.003)
    assert metrics.calibration_error(y, Normal(mu, sigma)) < 0.005


def test_nll_matches_scipy():
    rng = np.random.default_rng(0)
    y, mu, sigma = rng.normal(size=50), rng.normal(size=50), rng.uniform(0.5, 2, 50)
    expected = -stats.norm(mu, sigma).logpdf(y).mean()
    assert metrics.nll(y, Normal(mu, sigma)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("y, mu, sigma", [(0.3, 0.0, 1.0), (-2.0, 1.0, 0.5), (5.0, 5.0, 3.0)])
def test_crps_matches_numerical_integration(y, mu, sigma):
    def integrand(t):
        return (stats.norm.cdf(t, mu, sigma) - (t >= y)) ** 2

    lo, hi = mu - 12 * sigma, mu + 12 * sigma
    numeric = sum(integrate.quad(integrand, a, b, limit=200)[0]
                  for a, b in ((lo, y), (y, hi)))
    closed = Normal(np.array([mu]), np.array([sigma])).crps(np.array([y]))[0]
    assert closed == pytest.approx(numeric, rel=1e-6)


def test_overconfident_predictor_is_miscalibrated(reference_sample):
    y, mu, sigma = reference_sample
    honest = metrics.calibration_error(y, Normal(mu, sigma))
    overconfident = metrics.calibration_error(y, Normal(mu, sigma / 3))
    assert overconfident > 0.1 > honest
    assert metrics.coverage(y, Normal(mu, sigma / 3), 0.95) < 0.6


def test_interval_width_and_sharpness():
    sigma = np.array([1.0, 2.0])
    width = metrics.mean_interval_width(Normal(np.zeros(2), sigma), 0.95)
    assert width == pytest.approx(2 * 1.959964 * 1.5, rel=1e-6)
    scores = metrics.score(np.zeros(2), Normal(np.zeros(2), sigma), [0.5, 0.95])
    assert scores["sharpness"] == pytest.approx(np.sqrt(2.5))
    assert {"picp_50", "mpiw_50", "picp_95", "mpiw_95", "crps", "rmse", "mae"} <= set(scores)


def test_pit_is_uniform_for_the_truth(reference_sample):
    values = metrics.pit(reference_sample[0], Normal(*reference_sample[1:]))
    counts, _ = np.histogram(values, bins=10, range=(0, 1))
    assert np.all(np.abs(counts / len(values) - 0.1) < 0.005)


def test_linear_baseline_matches_a_direct_least_squares_fit():
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, size=(500, 2))
    y = 1.0 + x @ np.array([2.0, -0.5]) + rng.normal(scale=0.7, size=500)
    model = LinearGaussian.fit(x, y)
    design = np.column_stack([np.ones(500), x])
    coef = np.linalg.inv(design.T @ design) @ design.T @ y
    assert model.intercept == pytest.approx(coef[0])
    np.testing.assert_allclose(model.coefficients, coef[1:])
    residual_sd = np.sqrt(np.mean((y - design @ coef) ** 2))
    mu, sigma = model.predict(x)
    assert sigma == pytest.approx(np.full(500, residual_sd))
    assert metrics.nll(y, Normal(mu, sigma)) == pytest.approx(
        0.5 * np.log(2 * np.pi * residual_sd**2) + 0.5)


def test_quality_warning_names_both_scores_only_when_the_model_loses():
    from deepnormal.evaluation import Report, quality_warning

    def report(model, line):
        return Report({}, {"model": {"nll": model}, "linear": {"nll": line}}, {}, "normal")

    assert quality_warning(report(1.0, 2.0)) is None
    message = quality_warning(report(83.2, 2.0))
    assert "83.2000" in message and "2.0000" in message and "weight_decay" in message


# --- the log-normal family: every score in the target's own units -------------------------

LOGNORMAL = LogNormal


def test_lognormal_nll_is_the_density_of_y_including_the_jacobian():
    rng = np.random.default_rng(2)
    loc, scale = rng.normal(3.0, 0.5, 200), rng.uniform(0.2, 1.0, 200)
    y = np.exp(loc + scale * rng.normal(size=200))
    direct = -stats.lognorm(s=scale, scale=np.exp(loc)).logpdf(y)
    np.testing.assert_allclose(LOGNORMAL(loc, scale).nll_points(y), direct, rtol=1e-10)
    # = the normal NLL of log y plus log y
    np.testing.assert_allclose(direct, Normal(loc, scale).nll_points(np.log(y))
                               + np.log(y), rtol=1e-10)
    score = metrics.score(y, LOGNORMAL(loc, scale), [0.95])
    assert score["nll"] == pytest.approx(direct.mean(), rel=1e-10)
    # The mixture of one member is that log-normal.
    assert metrics.mixture_nll(y, LOGNORMAL(loc[None], scale[None])) == pytest.approx(
        direct.mean(), rel=1e-10)


@pytest.mark.parametrize("y, loc, scale", [(20.0, 3.0, 0.5), (1.5, 0.0, 1.2), (300.0, 5.0, 0.3)])
def test_lognormal_crps_matches_numerical_integration(y, loc, scale):
    distribution = stats.lognorm(s=scale, scale=np.exp(loc))

    def integrand(t):
        return (distribution.cdf(t) - (t >= y)) ** 2

    hi = distribution.ppf(1 - 1e-12)
    numeric = sum(integrate.quad(integrand, a, b, limit=400)[0] for a, b in ((0, y), (y, hi)))
    closed = LOGNORMAL(np.array([loc]), np.array([scale])).crps(np.array([y]))[0]
    assert closed == pytest.approx(numeric, rel=1e-5)


def test_lognormal_mean_median_std_quantiles_and_coverage():
    loc, scale = np.array([2.0]), np.array([0.6])
    distribution = stats.lognorm(s=0.6, scale=np.exp(2.0))
    assert LOGNORMAL(loc, scale).mean()[0] == pytest.approx(distribution.mean())
    assert LOGNORMAL(loc, scale).median()[0] == pytest.approx(distribution.median())
    assert LOGNORMAL(loc, scale).std()[0] == pytest.approx(distribution.std())
    low, high = LOGNORMAL(loc, scale).interval(0.9)
    assert (low[0], high[0]) == pytest.approx(distribution.interval(0.9))
    rng = np.random.default_rng(4)
    y = distribution.rvs(size=100_000, random_state=rng)
    ones = np.ones(len(y))
    assert metrics.coverage(y, LOGNORMAL(2.0 * ones, 0.6 * ones), 0.9) == pytest.approx(
        0.9, abs=0.005)
    assert metrics.calibration_error(y, LOGNORMAL(2.0 * ones, 0.6 * ones)) < 0.005
