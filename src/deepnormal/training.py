"""Fitting: the LR range test and the early-stopped training run, on the real Lightning Trainer."""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.tuner import Tuner
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from deepnormal.config import Params
from deepnormal.data import Split
from deepnormal.errors import DeepnormalError
from deepnormal.lightning_module import DIVERGENCE_ADVICE, DeepNormalModule
from deepnormal.loaders import SplitData, batches

# In-memory tensors need no worker processes; Lightning's hint about them is noise here.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*LightningModule.*in `eval` mode.*")


def is_main_process() -> bool:
    """False in the extra processes Lightning starts for DDP (they rerun the stage script):
    only the main process (global rank 0) tracks, prints and writes outputs."""
    return rank_zero_only.rank == 0


def _trainer(params: Params, **kwargs) -> pl.Trainer:
    c = params.compute
    defaults = dict(logger=False, enable_progress_bar=False, enable_model_summary=False,
                    num_sanity_val_steps=0, accelerator=c.accelerator, devices=c.devices,
                    strategy=c.strategy, precision=c.precision,
                    # loaders.SplitData shards the training rows itself.
                    use_distributed_sampler=False)
    try:
        return pl.Trainer(**(defaults | kwargs))
    except (MisconfigurationException, ValueError) as error:  # e.g. 16-mixed on a CPU
        raise DeepnormalError(f"params.yaml 'compute': {error}") from None


def check_compute(params: Params) -> None:
    """Build (and drop) a Trainer with the `compute` settings, so that one this machine
    cannot honour (no GPU, a precision the device lacks) fails before a run is opened."""
    _trainer(params)


def device_description(trainer: pl.Trainer) -> str:
    """e.g. 'cpu x2 (ddp)' or 'cuda x1' for logs and benchmarks."""
    accelerator = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    strategy = type(trainer.strategy).__name__.removesuffix("Strategy").lower()
    return f"{accelerator} x{trainer.num_devices} ({strategy}, {trainer.precision})"


def range_test(params: Params, train: Split) -> tuple[np.ndarray, np.ndarray]:
    """Lightning's LR range test on the training split: (lrs, smoothed losses).

    Runs in a temporary directory so the finder's own restore checkpoint never lingers.
    """
    pl.seed_everything(params.train.seed, verbose=False)
    module = DeepNormalModule.from_params(params.model, params.train, train,
                                          lr=params.lr_find.min_lr)
    loader = batches(train, params.train.batch_size, shuffle=True, seed=params.train.seed)
    steps = params.lr_find.num_steps
    with tempfile.TemporaryDirectory(prefix="deepnormal-lr-find-") as workdir:
        # One device whatever compute.devices says: the range test is short and serial.
        trainer = _trainer(params, default_root_dir=workdir, enable_checkpointing=False,
                           max_epochs=math.ceil(steps / len(loader)) + 1, devices=1,
                           strategy="auto")
        finder = Tuner(trainer).lr_find(
            module, train_dataloaders=loader, min_lr=params.lr_find.min_lr,
            max_lr=params.lr_find.max_lr, num_training=steps, update_attr=False,
        )
    if finder is None:
        return np.array([]), np.array([])
    return np.asarray(finder.results["lr"], float), np.asarray(finder.results["loss"], float)


class EpochHistory(pl.Callback):
    """Collects one row per epoch (train NLL, validation NLL, lr), hands it to `sink`
    (the MLflow logger) and prints a progress line every `print_every` epochs."""

    def __init__(self, sink: Callable[[dict], None] | None = None, print_every: int = 10):
        self.rows: list[dict] = []
        self.sink = sink
        self.print_every = print_every
        self._lr = float("nan")

    def on_train_epoch_start(self, trainer, module) -> None:
        self._lr = float(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_epoch_end(self, trainer, module) -> None:
        metrics = trainer.callback_metrics
        row = {
            "epoch": trainer.current_epoch,
            "train_nll": module.epoch_train_nll(),
            "val_nll": float(metrics["val_nll"]),
            "lr": self._lr,
        }
        self.rows.append(row)
        if self.sink is not None:
            self.sink(row)
        epoch = row["epoch"] + 1
        if not trainer.is_global_zero:
            return
        if epoch == 1 or epoch % self.print_every == 0:
            best = min(r["val_nll"] for r in self.rows)
            print(f"epoch {epoch:>4}/{trainer.max_epochs}  train_nll {row['train_nll']:.4f}  "
                  f"val_nll {row['val_nll']:.4f}  best {best:.4f}  lr {row['lr']:.3g}", flush=True)


@dataclass(frozen=True)
class FitResult:
    checkpoint: Path
    history: list[dict]
    best_epoch: int
    best_val_nll: float
    epochs_run: int
    stopped_early: bool
    device: str


def fit(params: Params, train: Split, val: Split, lr: float, out_dir: Path,
        sink: Callable[[dict], None] | None = None) -> FitResult:
    """Train with early stopping on validation NLL; keep the best epoch's checkpoint."""
    p = params.train
    pl.seed_everything(p.seed, verbose=False)
    module = DeepNormalModule.from_params(params.model, p, train, lr)
    # Several optimiser steps per Lightning step (loaders.batch_groups), so the module steps
    # the optimiser, clips gradients and steps the lr schedule itself.
    module.automatic_optimization = False
    history = EpochHistory(sink)
    stopper = EarlyStopping(monitor="val_nll", mode="min", patience=p.patience,
                            min_delta=p.min_delta, check_finite=True)
    checkpointer = ModelCheckpoint(dirpath=out_dir, filename="model", monitor="val_nll",
                                   mode="min", save_top_k=1, auto_insert_metric_name=False,
                                   enable_version_counter=False)
    trainer = _trainer(params, max_epochs=p.max_epochs, default_root_dir=out_dir,
                       callbacks=[history, stopper, checkpointer])
    if is_main_process():
        print(f"training on {device_description(trainer)}", flush=True)
    trainer.fit(module, datamodule=SplitData(train, val, p.batch_size, p.seed))
    rows = history.rows
    diverged = [r["epoch"] for r in rows if not math.isfinite(r["val_nll"])]
    if diverged:
        raise DeepnormalError(
            f"the validation NLL became non-finite at epoch {diverged[0]} (lr {lr:.3g}); "
            f"{DIVERGENCE_ADVICE}"
        )
    best = min(range(len(rows)), key=lambda i: rows[i]["val_nll"])
    return FitResult(
        checkpoint=Path(checkpointer.best_model_path),
        history=rows,
        best_epoch=rows[best]["epoch"],
        best_val_nll=rows[best]["val_nll"],
        epochs_run=len(rows),
        stopped_early=stopper.stopped_epoch > 0,
        device=device_description(trainer),
    )
