"""The training budget: the same params give every table size a sensible batch and length."""

import pytest

from deepnormal.budget import Budget, batch_size
from deepnormal.config import TrainParams

DEFAULTS = TrainParams()


@pytest.mark.parametrize("rows, expected", [
    # The reference problem ends by epochs: 5 steps x 4000 = 20,000 steps.
    (1_200, Budget(batch_size=256, steps_per_epoch=5, max_epochs=4000, patience=400)),
    # Small tables end by epochs (and early stopping) whatever their size ...
    (190, Budget(256, 1, 4000, 400)),
    (2_048, Budget(256, 8, 4000, 400)),
    # ... and from 2,048 rows by the 32,000 steps (4,096 rows: 16 x 2000).
    (3_000, Budget(256, 12, 2666, 267)),
    (4_096, Budget(256, 16, 2000, 200)),
    # Beyond 4,096 rows the step budget binds; from 8,192 the batch grows and the run takes
    # fewer steps, as many rows seen as at batch 256 (10,000 rows: 32,000 x 256 / 313) ...
    (5_187, Budget(256, 21, 1523, 152)),
    (8_192, Budget(256, 32, 1000, 100)),
    (10_000, Budget(313, 32, 817, 82)),
    # ... but at least half of max_steps: 16,000 steps (30,000 rows: 500 epochs of 32).
    (30_000, Budget(938, 32, 500, 50)),
    # Past max_batch_size x max_steps_per_epoch the batch stops growing.
    (600_000, Budget(4096, 147, 108, 11)),
])
def test_default_budget_by_table_size(rows, expected):
    assert Budget.for_rows(rows, DEFAULTS) == expected
    assert expected.max_steps <= DEFAULTS.max_steps
    assert expected.batch_size == batch_size(rows, DEFAULTS)


def test_budget_edges():
    # A batch_size above max_batch_size is honoured: the cap only limits growth.
    assert batch_size(100_000, TrainParams(batch_size=8192)) == 8192
    # A step budget shorter than one epoch still trains one epoch, and patience >= 1 epoch.
    tiny = Budget.for_rows(10_000, TrainParams(max_steps=3, patience=0.01))
    assert (tiny.max_epochs, tiny.patience) == (1, 1)
    assert Budget.for_rows(1_200, TrainParams(patience=1.0)).patience == 4000
