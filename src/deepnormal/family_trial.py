"""`model.distribution: auto`, its second half: the train stage tries the families the
generate stage offered (family_choice.py) and keeps the one the validation split prefers.

The first family (normal, or lognormal) is trained as ever. A heavy-tailed shape (studentt,
johnsonsu) is then tried only when its cheap proxy says it may pay: the first model's own
validation predictions re-scored in that shape, its scale factor and shape fitted on one half
of the validation rows and scored on the other (and the other way round). A shape that gains
less than PROXY_MARGIN nats per point there is not trained; on the reference problem none
is, so a table whose noise is Normal costs one training, as before. Nor is one tried with
fewer than MIN_SHAPE_ROWS validation rows: there the proxy's gain is noise (the tests' tiny
run on Normal noise, 36 rows, "found" a Student-t). The point mass at zero (zerolognormal)
has no such proxy and is always trained when offered: a share of exact zeros is structure,
not noise. Each trained family is
scored on the validation split as its ensemble predicts it: by NLL, or by CRPS when a point
mass is among them (its NLL at zero is a probability, a density's elsewhere: the two do not
compare). Another family replaces the first only when it is better by more than
TRIAL_MARGIN, so that a table that cannot tell them apart keeps the simpler family.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from deepnormal.config import Params
from deepnormal.family import JohnsonSU, Normal, StudentT, family_named
from deepnormal.family_choice import AUTO
from deepnormal.inference import TrainedModel, load_model
from deepnormal.prepared import Split
from deepnormal.training import FitResult, fit

PROXY_MARGIN = 0.02  # nats per point a re-scored shape must gain to be trained
MIN_SHAPE_ROWS = 200  # validation rows below which no heavy-tailed shape is tried
# A trained family must beat the first by this much on the validation split (nats per
# point; CRPS: this share of the first's). Heavy tails make the per-point differences too
# skewed for a standard-error rule: on the returns table a Student-t 0.13 nats better on
# validation (0.06 on test) stayed within two standard errors.
TRIAL_MARGIN = 0.01
HEAVY_TAILS = {"studentt": StudentT, "johnsonsu": JohnsonSU}


@dataclass(frozen=True)
class FamilyTrial:
    """What the trial did: the family kept, the score that decided, each trained family's
    validation score, and each shape not trained with the reason."""

    chosen: str
    score: str  # "nll" or "crps"
    scores: dict[str, float]
    untried: dict[str, str] = field(default_factory=dict)
    why: str = ""

    def as_dict(self) -> dict:
        return {"chosen": self.chosen, "score": self.score, "scores": self.scores,
                "untried": self.untried, "why": self.why}

    def line(self) -> str:
        tried = ", ".join(f"{name} {value:.4f}" for name, value in self.scores.items())
        untried = "; ".join(f"{name} not trained: {reason}"
                            for name, reason in self.untried.items())
        return (f"family: {self.chosen} (auto, by validation {self.score.upper()}: {tried}"
                + (f"; {untried}" if untried else "") + f"). {self.why}")


def shape_gains(loc: np.ndarray, scale: np.ndarray, y: np.ndarray,
                shapes: tuple[str, ...]) -> dict[str, float]:
    """Nats per point each heavy-tailed shape gains over the Normal on predictions (loc,
    scale) of targets y: per table a scale factor (and for the Normal only that) and the
    shape's own parameters, fitted on one half of the rows and scored on the other, then the
    other way round (two-fold, so that a flexible shape cannot win by fitting noise)."""
    z = (y - loc) / scale
    halves = (np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1)

    def cross_fitted(nll: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     start: list[float]) -> float:
        total = 0.0
        for fit_on, score_on in (halves, halves[::-1]):
            best = minimize(lambda p, rows=fit_on: float(np.mean(nll(p, z[rows]))), start,
                            method="Nelder-Mead", options={"maxiter": 2000, "xatol": 1e-4,
                                                           "fatol": 1e-7})
            total += float(np.sum(nll(best.x, z[score_on])))
        return total / len(z)

    def normal(p, values):
        return Normal(0.0, math.exp(p[0])).nll_points(values)

    def studentt(p, values):
        return StudentT(0.0, math.exp(p[0]), 1.0 + math.exp(p[1])).nll_points(values)

    def johnsonsu(p, values):
        return JohnsonSU(p[0], math.exp(p[1]), p[2], math.exp(p[2 + 1])).nll_points(values)

    proxies = {"studentt": (studentt, [0.0, math.log(9.0)]),
               "johnsonsu": (johnsonsu, [0.0, 0.0, 0.0, math.log(2.0)])}
    with np.errstate(all="ignore"):
        base = cross_fitted(normal, [0.0])
        return {name: base - cross_fitted(*proxies[name]) for name in shapes}


def scores(model: TrainedModel, val: Split, by: str) -> np.ndarray:
    """Each validation point's NLL or CRPS under a fit's ensemble, as it predicts."""
    predictive = model.predict(val.frame).distribution
    with np.errstate(all="ignore"):
        return (predictive.nll_points(val.target) if by == "nll"
                else predictive.crps(val.target))


def clearly_better(candidate: np.ndarray, base: np.ndarray, by: str) -> bool:
    """Better by more than TRIAL_MARGIN on average over the validation points (a CRPS, in
    the target's units, relatively)."""
    margin = TRIAL_MARGIN * (float(np.mean(base)) if by == "crps" else 1.0)
    return bool((candidate - base).mean() < -margin)


def try_families(params: Params, train: Split, val: Split, lr: float, out_dir: Path,
                 first: FitResult, candidates: tuple[str, ...],
                 progress: Callable[[str], None] = print,
                 logger_for: Callable[[str], object] = lambda family: None
                 ) -> tuple[FitResult, FamilyTrial]:
    """Train the candidates worth it (module docstring), and return the fit to keep (its
    checkpoint in out_dir/model.ckpt, as the first one's was) and what the trial found."""
    base = first.encoder.family.name
    shapes = tuple(name for name in candidates if name in HEAVY_TAILS)
    untried: dict[str, str] = {}
    first_model = load_model(first.checkpoint)
    if shapes and len(val) < MIN_SHAPE_ROWS:
        untried = {name: f"{len(val)} validation rows, fewer than the {MIN_SHAPE_ROWS} that "
                         "tell tails apart" for name in shapes}
        progress(f"family trial: {', '.join(shapes)} not tried: {untried[shapes[0]]}")
    elif shapes:
        predicted = first_model.predict(val.frame, calibrated=False).distribution
        gains = shape_gains(predicted.loc, predicted.scale, val.target, shapes)
        untried = {name: f"re-scored, it gains {gain:+.3f} nats (needs {PROXY_MARGIN})"
                   for name, gain in gains.items() if gain <= PROXY_MARGIN}
        for name, gain in gains.items():
            progress(f"family trial: the {base} model's validation predictions re-scored as "
                     f"{name} gain {gain:+.3f} nats per point"
                     + (": training it" if gain > PROXY_MARGIN else ": not worth training"))
    trained = [name for name in candidates if name not in untried]
    by = "crps" if any(family_named(name).point_mass for name in [base, *trained]) else "nll"
    fits = {base: first}
    points = {base: scores(first_model, val, by)}
    with tempfile.TemporaryDirectory(prefix="deepnormal-family-") as scratch:
        for name in trained:
            progress(f"family trial: training {name}")
            tried = params.with_values({"model.distribution": name})
            fits[name] = fit(tried, train, val, lr, Path(scratch) / name, logger_for(name),
                             progress=False)
            points[name] = scores(load_model(fits[name].checkpoint), val, by)
        better = [name for name in trained
                  if clearly_better(points[name], points[base], by)]
        chosen = min(better, key=lambda name: points[name].mean()) if better else base
        kept = fits[chosen]
        if chosen != base:
            shutil.copyfile(kept.checkpoint, out_dir / first.checkpoint.name)
            kept = replace(kept, checkpoint=out_dir / first.checkpoint.name)
    values = {name: float(found.mean()) for name, found in points.items()}
    if chosen != base:
        why = (f"{chosen} is better than {base} on the validation split by more than "
               f"{TRIAL_MARGIN} per point")
    elif trained:
        why = f"no family tried is clearly better than {base} on the validation split"
    else:
        why = f"no shape promised to beat {base}"
    return kept, FamilyTrial(chosen, by, values, untried, why)


def fit_family(params: Params, train: Split, val: Split, lr: float, out_dir: Path,
               candidates: tuple[str, ...], logger=None,
               logger_for: Callable[[str], object] = lambda family: None,
               progress: Callable[[str], None] = print) -> tuple[FitResult, FamilyTrial | None]:
    """The train stage's fit: the generate stage's family, then, with model.distribution
    auto and candidates offered, the trial (try_families); on one device only (the trial's
    extra fits do not run under DDP). With a trial, every family's curves go to `logger_for`
    (its own prefix) and the kept one's then to `logger` (log_curves), so that the run's
    unprefixed curves are always those of the model it keeps."""
    trial_due = params.model.distribution == AUTO and bool(candidates)
    if trial_due and params.compute.devices != 1:
        progress("family trial skipped: it trains on one device, and compute.devices is "
                 f"{params.compute.devices}; model.distribution can name a family instead")
        trial_due = False
    first = fit(params, train, val, lr, out_dir,
                logger_for(train.family) if trial_due and logger is not None else logger)
    if not trial_due:
        return first, None
    kept, trial = try_families(params, train, val, lr, out_dir, first, candidates, progress,
                               logger_for)
    if logger is not None:
        log_curves(logger, kept.history)
    progress(trial.line())
    return kept, trial


def log_curves(logger, history: list[dict]) -> None:
    """A fit's per-epoch curves (history.csv's rows), as the trainer logs them (with the
    `epoch` metric Lightning adds, and step = epoch)."""
    for row in history:
        logger.log_metrics({key: value for key, value in row.items() if math.isfinite(value)},
                           step=row["epoch"])
    logger.flush()
