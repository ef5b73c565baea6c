"""Fitting: the LR range test and the early-stopped training run, on the real Lightning Trainer."""

from __future__ import annotations

import logging
import math
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import Logger
from pytorch_lightning.tuner import Tuner
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from deepnormal.budget import Budget, batch_size
from deepnormal.capacity import piecewise_bins
from deepnormal.config import Params
from deepnormal.errors import DeepnormalError
from deepnormal.family_choice import family_to_fit
from deepnormal.lightning_module import DIVERGENCE_ADVICE, MEMBER_EPOCHS_KEY, DeepNormalModule
from deepnormal.loaders import SplitData, member_batches
from deepnormal.lr_rule import LrChoice, choose_lr, fixed_choice
from deepnormal.prepared import Split
from deepnormal.preprocessing import TableEncoder

# The stages print what matters themselves (the device, progress, the result). Lightning's
# info lines (accelerator banners, tips, checkpoint restores) would repeat for every Trainer.
logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
for message in (
    # In-memory tensors need no worker processes.
    ".*does not have many workers.*",
    # Only the epoch-level metrics are logged, so the step logging interval is moot.
    ".*smaller than the logging interval.*",
    # The LR range test trains without a validation split on purpose.
    ".*no `val_dataloader`.*",
    # Raised inside Lightning by its use of torch's pytree API (Lightning 2.6, torch 2.13).
    ".*LeafSpec.*is deprecated.*",
):
    warnings.filterwarnings("ignore", message=message)


# What early stopping and the checkpoint follow: the kept ensemble's validation NLL.
MONITOR = "val_nll_kept"


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


def fit_encoder(params: Params, train: Split) -> TableEncoder:
    """The table encoder for these params, fitted on the training split."""
    return TableEncoder.fit(train, family=family_to_fit(params.model.distribution, train.family),
                            standardize=params.model.standardize,
                            min_category_rows=params.data.min_category_rows,
                            log_skewed=params.model.log_skewed,
                            piecewise_bins=piecewise_bins(params.model, len(train)))


def range_test(params: Params, train: Split) -> tuple[np.ndarray, np.ndarray]:
    """Lightning's LR range test on the training split: (lrs, smoothed losses).

    Runs in a temporary directory so the finder's own restore checkpoint never lingers.
    """
    pl.seed_everything(params.train.seed, verbose=False)
    encoder = fit_encoder(params, train)
    # The finder replaces the lr schedule, so the run's length does not matter here.
    module = DeepNormalModule.for_fit(encoder, params.model, params.train,
                                      lr=params.lr_find.min_lr, max_epochs=1)
    # The batch training will use: the lr suits it.
    loader = member_batches(train, encoder, batch_size(len(train), params.train),
                            params.model.ensemble_size, seed=params.train.seed)
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


def find_lr(params: Params, train: Split) -> tuple[np.ndarray, np.ndarray, LrChoice]:
    """The lr_find stage's choice: the range test's curve (lrs, smoothed losses) and the lr
    the rule (lr_rule.choose_lr) picks from it; with lr_find.fixed_lr, that lr and no curve."""
    p = params.lr_find
    fixed = fixed_choice(p.fixed_lr)
    if fixed is not None:
        return np.array([]), np.array([]), fixed
    lrs, losses = range_test(params, train)
    return lrs, losses, choose_lr(lrs, losses, divisor=p.divisor, lower_bound=p.lower_bound,
                                  upper_bound=p.upper_bound, fallback_lr=p.fallback_lr)


class EpochHistory(Logger):
    """An in-memory Lightning logger: one row per epoch of what the module logs (train_nll,
    val_nll, val_nll_kept, lr; the module logs step = epoch), for history.csv; it prints a
    progress line for the first epoch and then every `print_every_s` seconds (None: never)."""

    def __init__(self, max_epochs: int, print_every_s: float | None = 5.0) -> None:
        super().__init__()
        self.max_epochs = max_epochs
        self.print_every_s = print_every_s
        self._rows: dict[int, dict] = {}
        self._last_print = -math.inf

    @property
    def name(self) -> str:
        return "history"

    @property
    def version(self) -> int:
        return 0

    @property
    def rows(self) -> list[dict]:
        return [{"epoch": epoch} | values for epoch, values in sorted(self._rows.items())]

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    @rank_zero_only
    def log_metrics(self, metrics, step=None) -> None:
        row = self._rows.setdefault(int(step), {"train_nll": math.nan, "val_nll": math.nan,
                                                 "val_nll_kept": math.nan, "lr": math.nan})
        row.update({key: float(value) for key, value in metrics.items() if key in row})
        # Training metrics arrive last in an epoch (after validation's).
        if self.print_every_s is None or "train_nll" not in metrics:
            return
        if time.monotonic() - self._last_print >= self.print_every_s:
            self._last_print = time.monotonic()
            print(f"epoch {step + 1:>4}/{self.max_epochs}  train_nll {row['train_nll']:.4f}  "
                  f"val_nll {row['val_nll']:.4f}  kept {row['val_nll_kept']:.4f}  "
                  f"lr {row['lr']:.3g}", flush=True)


@dataclass(frozen=True)
class FitResult:
    checkpoint: Path
    history: list[dict]
    best_epoch: int  # the epoch whose kept ensemble the checkpoint holds
    best_val_nll: float  # its validation NLL
    member_epochs: list[int]  # the epoch each member's kept weights come from
    epochs_run: int
    stopped_early: bool
    device: str
    sigma_scale: float  # the best checkpoint's variance calibration factor (1: none)
    encoder: TableEncoder  # fitted on the training split, stored in the checkpoint
    budget: Budget  # the batch, length and patience this table got


def fit(params: Params, train: Split, val: Split, lr: float, out_dir: Path,
        logger: Logger | None = None, progress: bool = True,
        callbacks: list[pl.Callback] = ()) -> FitResult:
    """Train with early stopping on the kept ensemble's validation NLL (each member keeps
    its own best epoch: lightning_module.KeptMembers); checkpoint the best kept ensemble.

    `logger` (e.g. MLflow's) receives the per-epoch curves beside the in-memory history;
    `progress` prints the device and a line every few seconds; `callbacks` join the
    Trainer's (the tuner's pruning)."""
    p = params.train
    pl.seed_everything(p.seed, verbose=False)
    encoder = fit_encoder(params, train)
    plan = Budget.for_rows(len(train), p)
    module = DeepNormalModule.for_fit(encoder, params.model, p, lr, max_epochs=plan.max_epochs)
    history = EpochHistory(plan.max_epochs, print_every_s=5.0 if progress else None)
    stopper = EarlyStopping(monitor=MONITOR, mode="min", patience=plan.patience,
                            min_delta=p.min_delta, check_finite=True)
    # Weights only: no optimizer state, and no callback state, which would record the
    # scratch folder's absolute path: the same inputs give the same bytes on one machine.
    checkpointer = ModelCheckpoint(dirpath=out_dir, filename="model", monitor=MONITOR,
                                   mode="min", save_top_k=1, auto_insert_metric_name=False,
                                   enable_version_counter=False, save_weights_only=True)
    trainer = _trainer(params, max_epochs=plan.max_epochs, default_root_dir=out_dir,
                       gradient_clip_val=p.gradient_clip,
                       logger=[history] + ([logger] if logger is not None else []),
                       callbacks=[stopper, checkpointer, *callbacks])
    if progress and is_main_process():
        print(f"training on {device_description(trainer)}: {len(train):,} rows, batch "
              f"{plan.batch_size:,} ({plan.steps_per_epoch} steps an epoch), up to "
              f"{plan.max_epochs} epochs, patience {plan.patience}", flush=True)
    trainer.fit(module, datamodule=SplitData(train, val, encoder, plan.batch_size,
                                             params.model.ensemble_size, p.seed))
    rows = history.rows
    diverged = [r["epoch"] for r in rows if not math.isfinite(r["val_nll"])]
    if diverged:
        raise DeepnormalError(
            f"the validation NLL became non-finite at epoch {diverged[0]} (lr {lr:.3g}); "
            f"{DIVERGENCE_ADVICE}"
        )
    best = min(range(len(rows)), key=lambda i: rows[i][MONITOR])
    checkpoint = Path(checkpointer.best_model_path)
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return FitResult(
        checkpoint=checkpoint,
        history=rows,
        best_epoch=rows[best]["epoch"],
        best_val_nll=rows[best][MONITOR],
        member_epochs=saved[MEMBER_EPOCHS_KEY],
        epochs_run=len(rows),
        stopped_early=stopper.stopped_epoch > 0,
        device=device_description(trainer),
        sigma_scale=float(saved["state_dict"]["net.sigma_scale"]),
        encoder=encoder,
        budget=plan,
    )
