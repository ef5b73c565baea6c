"""Choosing a learning rate from an LR range test curve: a pure function.

Rule ("min/divisor"): cut the curve at the first non-finite loss (the run has diverged
and nothing after it means anything), smooth it with a centred running median, skip the
first tenth (warm-up noise), take the lr at the minimum smoothed loss, divide by
`divisor` and clip to [lower_bound, upper_bound].

Why not Lightning's default "steepest descent" suggestion: on this loss the initial NLL
is huge and falls steeply at *any* lr, so the steepest point is often the very first one
(it once picked 1.9e-7, and the model never trained). The minimum of the curve marks the
edge of stability instead; a fixed factor below it is the classic safe choice.

When the curve has no usable minimum (too few finite points, or the loss never went
below its starting value) the rule falls back to `fallback_lr` and says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

RULE = "lr at min of median-smoothed loss / divisor, clipped to [lower_bound, upper_bound]"
MIN_FINITE_POINTS = 5
# The first tenth of the curve is warm-up: a handful of noisy batches at tiny lrs (the
# smoothing has barely started) says nothing about the lr; Lightning skips it too.
WARMUP_SHARE = 0.1
SMOOTHING_WINDOW = 5


@dataclass(frozen=True)
class LrChoice:
    lr: float
    rule: str
    lr_at_min_loss: float | None = None
    fallback_reason: str | None = None
    clipped: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def fixed_choice(fixed_lr: float | None) -> LrChoice | None:
    """lr_find.fixed_lr as the choice (no range test), or None: the range test decides."""
    return None if fixed_lr is None else LrChoice(lr=fixed_lr, rule="fixed_lr from params")


def running_median(values: np.ndarray, window: int = SMOOTHING_WINDOW) -> np.ndarray:
    """Centred running median; the ends use the points that exist (no lag, no padding)."""
    half = window // 2
    return np.array(
        [np.median(values[max(0, i - half): i + half + 1]) for i in range(len(values))]
    )


def choose_lr(
    lrs: np.ndarray,
    losses: np.ndarray,
    *,
    divisor: float,
    lower_bound: float,
    upper_bound: float,
    fallback_lr: float,
) -> LrChoice:
    lrs = np.asarray(lrs, dtype=float)
    losses = np.asarray(losses, dtype=float)
    if lrs.shape != losses.shape:
        raise ValueError(f"lrs and losses differ in shape: {lrs.shape} vs {losses.shape}")

    def fallback(reason: str) -> LrChoice:
        return LrChoice(lr=fallback_lr, rule="fallback_lr", fallback_reason=reason)

    bad = ~(np.isfinite(losses) & np.isfinite(lrs) & (lrs > 0))
    end = int(np.argmax(bad)) if bad.any() else len(losses)
    if end < MIN_FINITE_POINTS:
        return fallback(
            f"only {end} finite points before the loss diverged (need {MIN_FINITE_POINTS})"
        )
    lrs, losses = lrs[:end], losses[:end]
    smoothed = running_median(losses)
    warmup = max(1, int(len(smoothed) * WARMUP_SHARE))
    best = warmup + int(np.argmin(smoothed[warmup:]))
    if best == warmup and not smoothed[best] < np.median(smoothed[:warmup]):
        return fallback("the loss never decreased over the range tested")

    lr_at_min = float(lrs[best])
    chosen = float(np.clip(lr_at_min / divisor, lower_bound, upper_bound))
    return LrChoice(
        lr=chosen,
        rule=RULE,
        lr_at_min_loss=lr_at_min,
        clipped=not np.isclose(chosen, lr_at_min / divisor),
    )


def read_choice(path) -> LrChoice:
    """Load the lr_find stage's lr.json; refuse anything but a finite positive lr."""
    import json
    from pathlib import Path

    from deepnormal.errors import DeepnormalError

    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        choice = LrChoice(**raw)
    except FileNotFoundError:
        raise DeepnormalError(f"{path} is missing; run the lr_find stage") from None
    except (ValueError, TypeError) as error:
        raise DeepnormalError(f"{path} is not a valid lr_find result: {error}") from None
    if not (isinstance(choice.lr, (int, float)) and np.isfinite(choice.lr) and choice.lr > 0):
        raise DeepnormalError(f"{path}: lr must be a finite positive number, got {choice.lr!r}")
    return choice
