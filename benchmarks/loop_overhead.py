"""Benchmark: time per epoch of the train stage's Lightning loop against a plain PyTorch loop.

    python benchmarks/loop_overhead.py [--batch-size 64] [--epochs 100] [--runs 5]

Both loops train the same network (default params.yaml model) on the same batches of the
default synthetic training split (the same loader), for the same epochs, with the same
thread count, and both do what the stage does each epoch: a validation pass over the whole
validation split and a checkpoint when it improves. The plain loop is the reference's
hand-written one. Per-epoch times are (time for N epochs - time for 5 epochs) / (N - 5), so
set-up (building the Trainer, the first checkpoint) is excluded from both.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WARM_EPOCHS = 5


def default_params(batch_size: int, epochs: int):
    from deepnormal.config import load_params

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    train = params.train.model_copy(update={
        "batch_size": batch_size, "max_epochs": epochs, "patience": 10 * epochs,
        "lr_schedule": "constant"})
    compute = params.compute.model_copy(update={"accelerator": "cpu", "devices": 1})
    return params.model_copy(update={"train": train, "compute": compute})


def splits(n_train: int, seed: int = 0):
    """Synthetic train / val splits of the reference process, in memory."""
    import numpy as np

    from deepnormal import synthetic
    from deepnormal.config import GenerateParams
    from deepnormal.data import Split

    g = GenerateParams()
    n_val = max(n_train // 4, 100)
    x, y = synthetic.sample(g.model_copy(update={"n": n_train + n_val, "seed": seed}))
    x = np.asarray(x, float)[:, None]
    return (Split(x[:n_train], np.asarray(y[:n_train], float), ("x",)),
            Split(x[n_train:], np.asarray(y[n_train:], float), ("x",)))


def lightning_seconds(params, train, val, lr: float) -> float:
    from deepnormal.training import fit

    # Quiet: Lightning's banner and the per-epoch progress lines would bury the figures.
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        fit(params, train, val, lr, Path(out))
        return time.perf_counter() - start


def plain_seconds(params, train, val, lr: float) -> float:
    """The hand-written loop: the same module's network, loss and loader, no Lightning."""
    import torch

    from deepnormal.lightning_module import DeepNormalModule
    from deepnormal.loaders import batches
    from deepnormal.network import gaussian_nll_z

    torch.manual_seed(params.train.seed)
    net = DeepNormalModule.from_params(params.model, params.train, train, lr).net
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loader = batches(train, params.train.batch_size, shuffle=True, seed=params.train.seed)
    val_x = torch.tensor(val.features, dtype=torch.float32)
    val_y = torch.tensor(val.target, dtype=torch.float32)
    best = float("inf")
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        for _ in range(params.train.max_epochs):
            net.train()
            for x, y in loader:
                mu_z, sigma_z = net.standardised(x)
                loss = gaussian_nll_z(net.standardise_target(y), mu_z, sigma_z).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            net.eval()
            with torch.no_grad():
                mu_z, sigma_z = net.standardised(val_x)
                val_nll = float(gaussian_nll_z(net.standardise_target(val_y), mu_z,
                                               sigma_z).mean())
            if val_nll < best:
                best = val_nll
                torch.save(net.state_dict(), Path(out) / "best.pt")
        return time.perf_counter() - start


def per_epoch(measure, batch_size: int, epochs: int, train, val, lr: float) -> float:
    long = measure(default_params(batch_size, epochs), train, val, lr)
    short = measure(default_params(batch_size, WARM_EPOCHS), train, val, lr)
    return (long - short) / (epochs - WARM_EPOCHS)


def compare(batch_size: int, epochs: int, runs: int, n_train: int = 1200) -> dict:
    """Median per-epoch times over `runs` pairs, the two loops alternating so that a slow
    spell of the (shared, virtual) machine hits both; the ratio is the median of the pairs'."""
    import torch

    train, val = splits(n_train)
    lr = 3e-3
    per_epoch(lightning_seconds, batch_size, WARM_EPOCHS + 2, train, val, lr)  # warm-up
    lightning, plain = [], []
    for _ in range(runs):
        lightning.append(per_epoch(lightning_seconds, batch_size, epochs, train, val, lr))
        plain.append(per_epoch(plain_seconds, batch_size, epochs, train, val, lr))
    return {
        "batch_size": batch_size,
        "steps": -(-n_train // batch_size),
        "threads": torch.get_num_threads(),
        "lightning_ms": 1000 * statistics.median(lightning),
        "plain_ms": 1000 * statistics.median(plain),
        "ratio": statistics.median(a / b for a, b in zip(lightning, plain, strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    found = compare(args.batch_size, args.epochs, args.runs)
    print(f"batch {found['batch_size']} ({found['steps']} steps/epoch, "
          f"{found['threads']} threads): Lightning {found['lightning_ms']:.1f} ms/epoch, "
          f"plain PyTorch {found['plain_ms']:.1f} ms/epoch, "
          f"ratio {found['ratio']:.2f} (median of {args.runs} alternating pairs)")


if __name__ == "__main__":
    main()
