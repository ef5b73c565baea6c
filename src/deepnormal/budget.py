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
reference problem (1,200 training rows, batch 256: 5 steps a pass) gets 4000 passes, patience
400: its scale must fall steeply where the noise vanishes, which takes a long run (2000
passes left it 0.03 nats short on average, docs/model-quality.md); a small table that stops
early scores the same, one patience later.

max_steps counts steps of the smallest batch (train.batch_size). A grown batch sees more rows
a step, so the run takes proportionally fewer steps, the same rows seen, but never fewer than
MIN_STEP_SHARE of max_steps: half, as 16,000 steps were measured to score as 32,000 on the
synthetic 50,000-row table (three draws) and the million-row one (1.5751 against 1.5748),
and on a 61,000-row wage table (cpssw8, batch 1,152) even 8,000 did (3.4271 / 3.4286 /
3.4420 against 3.4265 / 3.4286 / 3.441); a quarter lost the synthetic 50,000-row table 0.003
to 0.010 nats (patience 27 epochs stopped it after 52-85).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from deepnormal.config import TrainParams

# The shortest run a grown batch gets, as a share of max_steps (see above): a million-row
# table (batch 4,096) trains 16,000 steps, not the 2,000 the rows seen alone would give it.
MIN_STEP_SHARE = 0.5


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
        epochs = max(1, min(train.max_epochs, step_budget(batch, train) // steps))
        return cls(batch, steps, epochs, max(1, round(train.patience * epochs)))


def batch_size(rows: int, train: TrainParams) -> int:
    """train.batch_size, or larger so that a pass over `rows` takes at most
    train.max_steps_per_epoch steps, but never above train.max_batch_size. (The lr range test
    reads only this.)"""
    grown = max(train.batch_size, math.ceil(rows / train.max_steps_per_epoch))
    return min(grown, max(train.max_batch_size, train.batch_size))


def step_budget(batch: int, train: TrainParams) -> int:
    """The run's optimizer steps at this batch: max_steps at train.batch_size, proportionally
    fewer at a grown batch (the same rows seen), at least MIN_STEP_SHARE of max_steps."""
    share = max(MIN_STEP_SHARE, min(1.0, train.batch_size / batch))
    return max(1, round(train.max_steps * share))
