import numpy as np

from deepnormal.lr_rule import choose_lr, running_median

LRS = np.logspace(-5, 0, 100)
BOUNDS = dict(divisor=10.0, lower_bound=1e-4, upper_bound=0.1, fallback_lr=1e-3)


def u_shaped(lrs=LRS, best=0.1):
    return (np.log10(lrs) - np.log10(best)) ** 2


def test_picks_the_minimum_divided_by_the_divisor():
    choice = choose_lr(LRS, u_shaped(), **BOUNDS)
    assert choice.fallback_reason is None
    assert np.isclose(choice.lr_at_min_loss, 0.1, rtol=0.15)
    assert np.isclose(choice.lr, choice.lr_at_min_loss / 10)


def test_not_fooled_by_a_steep_start():
    # Huge initial loss that falls steepest at the very first points (the default
    # "steepest descent" rule would pick ~1e-5); the real minimum is near 3e-2.
    losses = 100 * np.exp(-np.arange(100) / 3) + u_shaped(best=3e-2)
    choice = choose_lr(LRS, losses, **BOUNDS)
    assert np.isclose(choice.lr_at_min_loss, 3e-2, rtol=0.2)
    assert 1e-3 < choice.lr < 1e-2


def test_never_decreasing_curve_falls_back_with_a_reason():
    choice = choose_lr(LRS, np.linspace(1.0, 5.0, 100), **BOUNDS)
    assert choice.lr == 1e-3
    assert choice.rule == "fallback_lr"
    assert "never decreased" in choice.fallback_reason


def test_nans_cut_the_curve_at_divergence():
    losses = u_shaped(best=1e-2)
    losses[70:] = np.nan  # diverged from lr ~ 3e-2 on; a later finite point must not count
    losses[90] = -100.0
    choice = choose_lr(LRS, losses, **BOUNDS)
    assert np.isclose(choice.lr_at_min_loss, 1e-2, rtol=0.2)


def test_too_few_finite_points_fall_back():
    losses = np.full(100, np.nan)
    losses[:3] = [3.0, 2.0, 1.0]
    choice = choose_lr(LRS, losses, **BOUNDS)
    assert choice.lr == 1e-3 and "finite points" in choice.fallback_reason


def test_empty_curve_falls_back():
    assert choose_lr(np.array([]), np.array([]), **BOUNDS).rule == "fallback_lr"


def test_choice_is_clipped_to_bounds():
    low = choose_lr(LRS, u_shaped(best=3e-4), **BOUNDS)
    assert low.fallback_reason is None and low.lr == 1e-4 and low.clipped
    high = choose_lr(LRS, u_shaped(best=0.9), **BOUNDS | {"divisor": 1.0})
    assert high.lr == 0.1 and high.clipped
    inside = choose_lr(LRS, u_shaped(best=0.1), **BOUNDS)
    assert not inside.clipped


def test_running_median_removes_a_spike():
    values = np.ones(20)
    values[10] = 50.0
    assert running_median(values).max() == 1.0
