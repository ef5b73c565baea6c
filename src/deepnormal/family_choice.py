"""`model.distribution: auto`: which family suits the target, decided once, by the generate
stage, and kept in data/prepared/columns.json for every later stage.

A price, a wage, a count of rentals is positive and skewed to the right; a Normal spends
probability on values below zero and cannot grow its spread with the level. The log-normal
family models log(target) instead (family.py), and scores in the target's units. Auto picks
it when every target in the table is positive and the homoscedastic line (least squares on
the encoded inputs, one global sigma, a fit in milliseconds) describes the training split
better on log(target) than on the target itself, by more than MARGIN nats per point, both
scored as densities of the target (the log-normal's with its Jacobian). On each of the five
benchmark tables where it picks the log-normal, the network scored better with it too, by
0.01 to 0.43 nats (docs/model-quality.md); the margin keeps the normal family where the
line cannot tell the two apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from deepnormal.baselines import LinearGaussian
from deepnormal.data import Split, read_split, split_path
from deepnormal.family import family
from deepnormal.preprocessing import TableEncoder

AUTO = "auto"
MARGIN = 0.05  # nats per point the log-normal line must win by


@dataclass(frozen=True)
class FamilyChoice:
    name: str  # normal | lognormal
    why: str

    def as_dict(self) -> dict:
        return asdict(self)


def line_nll(train: Split, name: str) -> float:
    """The homoscedastic line's NLL per point on its own training split, in target units."""
    fam = family(name)
    encoder = TableEncoder.fit(train, family=name)
    design = encoder.design(encoder.encode(train.frame))
    line = LinearGaussian.fit(design, fam.transform(train.target))
    return float(np.mean(fam.nll_points(train.target, *line.predict(design))))


def choose_family(distribution: str, train: Split, every_target_positive: bool) -> FamilyChoice:
    """The family for model.distribution: a named one as it is; auto as the module says.
    `every_target_positive` covers the whole table, not only the training split."""
    if distribution != AUTO:
        return FamilyChoice(distribution, "model.distribution")
    if not every_target_positive:
        return FamilyChoice("normal", "auto: the target is not positive in every row")
    gain = line_nll(train, "normal") - line_nll(train, "lognormal")
    if gain > MARGIN:
        return FamilyChoice("lognormal", f"auto: the target is positive, and a line fits "
                                         f"log(target) better by {gain:.3f} nats per point")
    return FamilyChoice("normal", f"auto: the target is positive, but a line fits "
                                  f"log(target) better by only {gain:+.3f} nats per point "
                                  f"(lognormal needs more than {MARGIN})")


def choose_for_prepared(distribution: str, directory, parts: dict, kinds: dict[str, str]
                        ) -> FamilyChoice:
    """The choice for splits just written to `directory` (the training split read back as
    every later stage reads it); `parts` are the split frames, the target last."""
    positive = all(bool((part.iloc[:, -1] > 0).all()) for part in parts.values())
    return choose_family(distribution, read_split(split_path(directory, "train"), kinds),
                         positive)
