"""The training budget for a table of any size: the batch, the run's length and patience.

One params.yaml serves 200 rows and a million. `train.batch_size` is the smallest batch; on a
table with more than batch_size x max_steps_per_epoch training rows the batch grows so that
one pass over the rows (an epoch, after which the validation split is scored) takes at most
max_steps_per_epoch optimizer steps, up to max_batch_size rows (a step costs in proportion to
its batch; beyond a few thousand rows a larger batch buys this small network little).
The run lasts max_epochs passes or max_steps steps, whichever is fewer: a small table is
bounded by passes (early stopping decides), a large one by steps, each on a larger, less
noisy batch, instead of by thousands of long passes. The cosine schedule spans the run and
early stopping waits `patience` (a share) of it, so both mean the same at every size. The
reference problem (1,200 training rows, batch 256: 5 steps a pass) keeps the budget it had
in epochs: 2000 passes, patience 200.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from deepnormal.config import TrainParams


@dataclass(frozen=True)
class Budget:
    batch_size: int  # rows per step, per ensemble member
    steps_per_epoch: int
    max_epochs: int  # the run's length in passes; the cosine schedule reaches 0 here
    patience: int  # passes without a validation improvement before stopping

    @property
    def max_steps(self) -> int:
        return self.max_epochs * self.steps_per_epoch

    def as_dict(self) -> dict[str, int]:
        return asdict(self) | {"max_steps": self.max_steps}

    @classmethod
    def for_rows(cls, rows: int, train: TrainParams) -> Budget:
        """The budget for `rows` training rows (on one device: under DDP each process takes
        its share of every pass, so a pass has fewer, jointly larger, steps)."""
        batch = batch_size(rows, train)
        steps = math.ceil(rows / batch)
        epochs = max(1, min(train.max_epochs, train.max_steps // steps))
        return cls(batch, steps, epochs, max(1, round(train.patience * epochs)))


def batch_size(rows: int, train: TrainParams) -> int:
    """train.batch_size, or larger so that a pass over `rows` takes at most
    train.max_steps_per_epoch steps, but never above train.max_batch_size. (The lr range test
    reads only this.)"""
    grown = max(train.batch_size, math.ceil(rows / train.max_steps_per_epoch))
    return min(grown, max(train.max_batch_size, train.batch_size))

