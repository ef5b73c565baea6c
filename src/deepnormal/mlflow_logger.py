"""Lightning's MLFlowLogger, sending metrics in a few large batches.

The stock logger makes one synchronous `log_batch` call per `log_metrics` (twice an epoch
here: validation, then training), and on a SQLite store each call is a transaction of tens
of milliseconds (docs/performance.md: what tracking costs; MLflow's asynchronous mode was
slower still, its writer thread competing with training for the cores). This subclass
keeps the rows and sends them every `flush_every_s` seconds, so the MLflow UI still follows
a long run, and at `finalize`, which Lightning calls when fit ends or fails.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

# MLflow accepts at most 1000 metrics per log_batch.
MAX_BATCH = 1000


class BatchedMLFlowLogger(MLFlowLogger):
    def __init__(self, *args, flush_every_s: float = 10.0, metric_prefix: str = "",
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.flush_every_s = flush_every_s
        # Before every metric's name: another fit's curves in the same run (the family trial's
        # `studentt.val_nll`).
        self.metric_prefix = metric_prefix
        self._pending: list = []
        self._last_flush = time.monotonic()

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self._pending += [Metric(f"{self.metric_prefix}{key}", float(value), stamp, step or 0)
                          for key, value in metrics.items()]
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    @rank_zero_only
    def flush(self) -> None:
        """Send every metric kept so far. Rows a failed send loses are not sent again at
        `finalize`: the run fails with that error, and retrying a store that is down would
        only delay the message."""
        batch, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        for start in range(0, len(batch), MAX_BATCH):
            self.experiment.log_batch(self.run_id, metrics=batch[start:start + MAX_BATCH])

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        self.flush()
        super().finalize(status)
