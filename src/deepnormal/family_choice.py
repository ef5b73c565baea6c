"""`model.distribution: auto`: which family suits the target. The generate stage
(preparation.py) decides what the table's support allows and a first family, kept in the
prepared table's description for every later stage; the train stage then tries the other
candidates on the validation split (family_trial.py).

A price, a wage, a count of rentals is positive and skewed to the right; a Normal spends
probability on values below zero and cannot grow its spread with the level. The log-normal
family models log(target) instead (family.py), and scores in the target's units. Auto picks
it when every target in the table is positive and the homoscedastic line (least squares on
the encoded inputs, one global sigma, a fit in milliseconds) describes the training split
better on log(target) than on the target itself, by more than MARGIN nats per point, both
scored as densities of the target (the log-normal's with its Jacobian). The margin keeps the
normal family where the line cannot tell the two apart (docs/model-quality.md says what the
choice was worth on the benchmark tables).
"""

from __future__ import annotations

import numpy as np

from deepnormal.baselines import LinearGaussian
from deepnormal.family import family_named
from deepnormal.prepared import FamilyChoice, Split
from deepnormal.preprocessing import TableEncoder

AUTO = "auto"
MARGIN = 0.05  # nats per point the log-normal line must win by
# A never negative target with at least this share of exact zeros (spending, hours worked,
# rain) is offered the point mass at zero (zerolognormal).
ZERO_SHARE = 0.05


def line_nll(train: Split, name: str) -> float:
    """The homoscedastic line's NLL per point on its own training split, in target units."""
    family = family_named(name)
    encoder = TableEncoder.fit(train, family=name)
    design = encoder.design(encoder.encode(train.frame))
    line = LinearGaussian.fit(design, family.transform(train.target))
    return float(np.mean(family(*line.predict(design)).nll_points(train.target)))


def choose_family(distribution: str, train: Split, every_target_positive: bool,
                  zero_share: float = 0.0) -> FamilyChoice:
    """The family for model.distribution: a named one as it is; auto as the module says,
    with the families the train stage may try instead (the heavy-tailed ones on a target of
    any sign; the point mass at zero when at least ZERO_SHARE of a never negative target is
    exactly zero). `every_target_positive` and `zero_share` cover the whole table."""
    if distribution != AUTO:
        return FamilyChoice(distribution, "model.distribution")
    tails = ("studentt", "johnsonsu")
    zeros = ("zerolognormal",) if zero_share >= ZERO_SHARE else ()
    if not every_target_positive:
        return FamilyChoice("normal", "auto: the target is not positive in every row"
                            + (f" ({zero_share:.0%} are exactly zero)" if zeros else ""),
                            zeros + tails)
    gain = line_nll(train, "normal") - line_nll(train, "lognormal")
    if gain > MARGIN:
        return FamilyChoice("lognormal", f"auto: the target is positive, and a line fits "
                                         f"log(target) better by {gain:.3f} nats per point")
    return FamilyChoice("normal", f"auto: the target is positive, but a line fits "
                                  f"log(target) better by only {gain:+.3f} nats per point "
                                  f"(lognormal needs more than {MARGIN})", tails)


def family_to_fit(distribution: str, prepared_family: str) -> str:
    """The family a model is fitted with: model.distribution when it names one (a tuned or
    edited value), else the one the generate stage resolved for the prepared splits."""
    return prepared_family if distribution == AUTO else distribution
