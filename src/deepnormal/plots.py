"""Figures, as PNG files: matplotlib with the headless Agg backend.

Scoring always uses every point; only what is *drawn* is subsampled (`max_points`),
so plots stay legible and fast on large test sets.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _subsample(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def lr_range_test(lrs: np.ndarray, losses: np.ndarray, chosen_lr: float, note: str,
                  path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    if len(lrs):
        ax.plot(lrs, losses, color="tab:blue", label="smoothed training loss")
        ax.set_xscale("log")
        finite = losses[np.isfinite(losses)]
        if len(finite):
            # The first points can be orders of magnitude above the rest; show the useful part.
            ax.set_ylim(finite.min() - 0.1 * abs(finite.min()) - 0.1,
                        np.percentile(finite, 90) + 0.1)
    else:
        ax.text(0.5, 0.6, "no range test run", ha="center", transform=ax.transAxes)
    ax.axvline(chosen_lr, color="tab:red", linestyle="--", label=f"chosen lr = {chosen_lr:.3g}")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (standardised NLL)")
    ax.set_title(note, fontsize=8)
    ax.legend()
    return _save(fig, path)


def learning_curves(history: list[dict], best_epoch: int, stopped_early: bool,
                    path: Path) -> Path:
    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [row["train_nll"] for row in history], label="train NLL")
    ax.plot(epochs, [row["val_nll"] for row in history], label="validation NLL")
    # Each member keeps its own best weights: the kept ensemble's curve only falls.
    ax.plot(epochs, [row.get("val_nll_kept", math.nan) for row in history],
            label="validation NLL, kept weights")
    ax.axvline(best_epoch, color="tab:red", linestyle="--",
               label=f"best epoch {best_epoch} (checkpoint)")
    if stopped_early:
        ax.axvline(epochs[-1], color="black", linestyle=":",
                   label=f"early stop at epoch {epochs[-1]}")
    values = np.array([row["val_nll"] for row in history] + [row["train_nll"] for row in history])
    values = values[np.isfinite(values)]
    if len(values):
        ax.set_ylim(values.min() - 0.05, np.percentile(values, 95) + 0.05)
    ax.set_xlabel("epoch")
    ax.set_ylabel("NLL (nats per point)")
    ax.legend()
    return _save(fig, path)


def prediction_band(x: np.ndarray, y: np.ndarray, grid: np.ndarray, mean: np.ndarray,
                    bands: dict[float, tuple[np.ndarray, np.ndarray]], path: Path,
                    names: tuple[str, str] = ("x", "y"),
                    true_mu: np.ndarray | None = None,
                    true_sigma: np.ndarray | None = None, max_points: int = 5000) -> Path:
    """One feature: the test data, the predicted mean and its central intervals on a grid
    (`bands`: level -> (lower, upper); 0.6827 and 0.9545 are the 1 and 2 sigma bands of a
    normal)."""
    keep = _subsample(len(x), max_points)
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.scatter(x[keep], y[keep], s=6, alpha=0.4, color="grey", label="test data")
    for level, (lower, upper) in sorted(bands.items(), reverse=True):
        ax.fill_between(grid, lower, upper, alpha=0.2 if level > 0.9 else 0.3,
                        color="tab:blue", label=f"central {level:.1%} interval")
    ax.plot(grid, mean, color="tab:blue", label="predicted mean")
    if true_mu is not None and true_sigma is not None:
        ax.plot(grid, true_mu, color="black", linestyle="--", linewidth=1, label="true mean")
        for sign in (-2, 2):
            ax.plot(grid, true_mu + sign * true_sigma, color="black", linestyle=":",
                    linewidth=1, label="true mean ± 2σ" if sign < 0 else None)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.legend(fontsize=8)
    return _save(fig, path)


def sigma_vs_input(grid: np.ndarray, sigma: np.ndarray, path: Path, name: str = "x",
                   true_sigma: np.ndarray | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(grid, sigma, label="predicted σ")
    if true_sigma is not None:
        ax.plot(grid, true_sigma, color="black", linestyle="--", label="true σ")
    ax.set_xlabel(name)
    ax.set_ylabel("σ")
    ax.legend()
    return _save(fig, path)


def observed_vs_predicted(y: np.ndarray, mean: np.ndarray,
                          bounds: tuple[np.ndarray, np.ndarray], path: Path,
                          max_points: int = 5000) -> Path:
    """Any number of features: observed target against the predicted mean, with bars
    spanning the central 95% interval (asymmetric for a skewed family)."""
    keep = _subsample(len(y), max_points)
    lower, upper = bounds
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.errorbar(mean[keep], y[keep],
                xerr=np.vstack([mean[keep] - lower[keep], upper[keep] - mean[keep]]).clip(0),
                fmt="o", markersize=2, alpha=0.3, elinewidth=0.5)
    low, high = min(np.nanmin(y), np.nanmin(mean)), max(np.nanmax(y), np.nanmax(mean))
    ax.plot([low, high], [low, high], color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("predicted mean (bars: central 95% interval)")
    ax.set_ylabel("observed")
    return _save(fig, path)


def sigma_vs_error(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray, path: Path,
                   max_points: int = 5000) -> Path:
    keep = _subsample(len(y), max_points)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(sigma[keep], np.abs(y - mu)[keep], s=4, alpha=0.3)
    top = float(np.nanmax(sigma))
    ax.plot([0, top], [0, top * np.sqrt(2 / np.pi)], color="black", linestyle="--",
            label="E|error| for a calibrated σ")
    ax.set_xlabel("predicted σ")
    ax.set_ylabel("|observed - predicted mean|")
    ax.legend()
    return _save(fig, path)


def sigma_per_category(labels, sigma: np.ndarray, column: str, target: str, path: Path,
                       most: int = 20) -> Path:
    """The predicted std of the target per category of one column (its `most` most common
    categories on the test split): where the model is more or less sure."""
    import pandas as pd

    frame = pd.DataFrame({"label": pd.Series(labels).fillna("(missing)").astype(str).to_numpy(),
                          "sigma": sigma})
    common = frame["label"].value_counts().index[:most]
    groups = [frame.loc[frame["label"] == label, "sigma"].to_numpy() for label in common]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(common) + 2), 4))
    ax.boxplot(groups, showfliers=False)
    ax.set_xticks(range(1, len(common) + 1), [str(label)[:18] for label in common],
                  rotation=45, ha="right", fontsize=8)
    ax.set_xlabel(column)
    ax.set_ylabel(f"predicted std of {target}")
    ax.set_title(f"predicted uncertainty per category of '{column}' (test split)", fontsize=9)
    return _save(fig, path)


def calibration(levels: np.ndarray, curves: dict[str, np.ndarray], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="ideal")
    for name, observed in curves.items():
        ax.plot(levels, observed, marker="o", markersize=3, label=name)
    ax.set_xlabel("nominal quantile level")
    ax.set_ylabel("observed fraction below")
    ax.legend()
    return _save(fig, path)


def pit_histogram(values: np.ndarray, path: Path, bins: int = 20) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(values, bins=bins, range=(0, 1), density=True, alpha=0.7)
    ax.axhline(1.0, color="black", linestyle="--", label="calibrated (uniform)")
    ax.set_xlabel("PIT = Φ((y - μ) / σ)")
    ax.set_ylabel("density")
    ax.legend()
    return _save(fig, path)
