"""Benchmark: time per epoch of the train stage's Lightning loop against a plain PyTorch loop.

    python -m benchmarks.loop_overhead [--batch-size 64] [--epochs 30] [--runs 15]
                                       [--train-rows 1200] [--ensemble-size M]
                                       [--hidden-sizes 64 64]

Both loops train the same network (default params.yaml model: the ensemble) on the same
batches of the default synthetic training split (the same loader), for the same epochs, with
the same thread count, and both do what the stage does each epoch: a validation pass over the
whole validation split and a checkpoint when it improves. The plain loop is the reference's
hand-written one. An epoch's time runs from the end of one epoch to the end of the next, so
set-up (building the Trainer, the first epoch) is excluded from both; the figure is the
median over every epoch of every run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import statistics
import tempfile
import time
from pathlib import Path


def default_params(batch_size: int, epochs: int, model: dict | None = None):
    """params.yaml's, for a timing run; `model` overrides entries of the model section."""
    from benchmarks.common import params_for

    return params_for({f"model.{key}": value for key, value in (model or {}).items()} | {
        "train.batch_size": batch_size, "train.max_epochs": epochs, "train.max_steps": 10**9,
        "train.patience": 1.0, "train.lr_schedule": "constant", "compute.accelerator": "cpu",
        "compute.devices": 1})


def splits(n_train: int, seed: int = 0):
    """Synthetic train / val splits of the reference process, in memory."""
    import numpy as np
    import pandas as pd

    from deepnormal import synthetic
    from deepnormal.config import GenerateParams
    from deepnormal.data import NUMERIC
    from deepnormal.prepared import Split

    g = GenerateParams()
    n_val = max(n_train // 4, 100)
    x, y = synthetic.sample(g.model_copy(update={"n": n_train + n_val, "seed": seed}))
    frame, y = pd.DataFrame({"x": np.asarray(x, float)}), np.asarray(y, float)
    return (Split(frame[:n_train].reset_index(drop=True), y[:n_train], {"x": NUMERIC}),
            Split(frame[n_train:].reset_index(drop=True), y[n_train:], {"x": NUMERIC}))


def lightning_epoch_seconds(params, train, val, lr: float) -> list[float]:
    """The train stage's loop (training.fit): wall seconds of each epoch after the first,
    from the end of one epoch to the end of the next (training, validation, checkpoint and
    Lightning's bookkeeping between epochs)."""
    from pytorch_lightning.loggers import Logger

    from deepnormal.training import fit

    class EpochStamps(Logger):
        """Notes the time at which each epoch's training metrics (logged last) arrive."""

        name, version = "stamps", 0

        def __init__(self) -> None:
            super().__init__()
            self.stamps: list[float] = []

        def log_hyperparams(self, *args, **kwargs) -> None:
            pass

        def log_metrics(self, metrics, step=None) -> None:
            if "train_nll" in metrics:
                self.stamps.append(time.perf_counter())

    stamps = EpochStamps()
    # Quiet: the per-epoch progress lines would bury the figures.
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        fit(params, train, val, lr, Path(out), logger=stamps)
    return [b - a for a, b in itertools.pairwise(stamps.stamps)]


def plain_epoch_seconds(params, train, val, lr: float) -> list[float]:
    """The hand-written loop: the same module's network, loss and loader, no Lightning;
    timed like lightning_epoch_seconds."""
    import torch

    from deepnormal.budget import batch_size
    from deepnormal.lightning_module import DeepNormalModule
    from deepnormal.loaders import member_batches, tensors
    from deepnormal.network import gaussian_nll_z, mixture_moments
    from deepnormal.training import fit_encoder

    torch.manual_seed(params.train.seed)
    encoder = fit_encoder(params, train)
    net = DeepNormalModule.for_fit(encoder, params.model, params.train, lr,
                                   max_epochs=params.train.max_epochs).net
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loader = member_batches(train, encoder, batch_size(len(train), params.train),
                            params.model.ensemble_size, seed=params.train.seed)
    val_x, val_codes, val_y, _, _ = tensors(val, encoder).tensors
    best = float("inf")
    stamps = []
    with tempfile.TemporaryDirectory() as out:
        for epoch in range(params.train.max_epochs):
            net.train()
            loader.sampler.set_epoch(epoch)
            for x, codes, y_z, _, _ in loader:
                mu_z, sigma_z = net.members(x, codes)
                loss = gaussian_nll_z(y_z, mu_z, sigma_z).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            net.eval()
            with torch.no_grad():
                mu_z, sigma_z = mixture_moments(*net.members(val_x, val_codes))
                val_nll = float(gaussian_nll_z(val_y, mu_z, sigma_z).mean())
            if val_nll < best:
                best = val_nll
                torch.save(net.state_dict(), Path(out) / "best.pt")
            stamps.append(time.perf_counter())
    return [b - a for a, b in itertools.pairwise(stamps)]


def compare(batch_size: int, epochs: int, runs: int, n_train: int = 1200,
            model: dict | None = None) -> dict:
    """Median seconds per epoch of each loop over `runs` runs of `epochs` epochs, the two
    loops alternating so that a slow spell of the (shared, virtual) machine hits both; the
    median of every epoch's time, so that such a spell does not decide the figure."""
    import torch

    train, val = splits(n_train)
    lr = 3e-3
    params = default_params(batch_size, epochs, model)
    lightning_epoch_seconds(default_params(batch_size, 3, model), train, val, lr)  # warm-up
    lightning, plain, ratios = [], [], []
    for _ in range(runs):
        lightning_run = lightning_epoch_seconds(params, train, val, lr)
        plain_run = plain_epoch_seconds(params, train, val, lr)
        lightning += lightning_run
        plain += plain_run
        ratios.append(statistics.median(lightning_run) / statistics.median(plain_run))
    return {
        "batch_size": batch_size,
        "steps": -(-n_train // batch_size),  # at most max_batch_size: see budget.py
        "threads": torch.get_num_threads(),
        "lightning_ms": 1000 * statistics.median(lightning),
        "plain_ms": 1000 * statistics.median(plain),
        "ratio": statistics.median(lightning) / statistics.median(plain),
        "run_ratios": (min(ratios), max(ratios)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--train-rows", type=int, default=1200,
                        help="rows of the synthetic training split (the reference's: 1200)")
    parser.add_argument("--ensemble-size", type=int, help="instead of params.yaml's")
    parser.add_argument("--hidden-sizes", type=int, nargs="+", help="instead of params.yaml's")
    args = parser.parse_args()
    model = {key: value for key, value in (("ensemble_size", args.ensemble_size),
                                           ("hidden_sizes", args.hidden_sizes)) if value}
    found = compare(args.batch_size, args.epochs, args.runs, n_train=args.train_rows,
                    model=model)
    low, high = found["run_ratios"]
    print(f"batch {found['batch_size']} ({found['steps']} steps/epoch, "
          f"{found['threads']} threads): Lightning {found['lightning_ms']:.1f} ms/epoch, "
          f"plain PyTorch {found['plain_ms']:.1f} ms/epoch, ratio {found['ratio']:.2f} "
          f"(medians over {args.runs} alternating runs of {args.epochs} epochs; "
          f"single runs {low:.2f}..{high:.2f})")


if __name__ == "__main__":
    main()
