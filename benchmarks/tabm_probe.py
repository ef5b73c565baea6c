"""Benchmark: TabM (Gorishniy et al., ICLR 2025; package `tabm`) as a mean-variance network,
on the splits the other benchmarks use, to weigh it against the project's ensemble of
independent members.

    python -m benchmarks.tabm_probe [--tables NAME ...] [--splits 3] [--arms tabm packed]

Each split is the generate stage's (generate.seed = split); the inputs are the project's own
encoder's (standardised numbers, "was empty" flags, date features; categories as codes,
one-hot inside TabM); the target is the family the generate stage chose, if it is the normal
or the log-normal (else the normal), standardised. Every member outputs a location and a
softplus scale and is trained on the Gaussian NLL, with TabM's own recipe (AdamW, lr 2e-3,
weight decay 3e-4, batch 256 or larger tables' batch as budget.py grows it, early stopping
after 16 epochs without a better validation NLL of the ensemble); the ensemble is predicted
as the project's is (the members' mean and variance, one Normal) and scored on test in the
target's units. Arms:
  - tabm:      k = 32 members sharing a 3 x 256 ReLU backbone with per-member adapters
               (BatchEnsemble), dropout 0.1: the paper's recipe at half its width;
  - tabm-ple:  the same, 2 blocks, on piecewise-linear embeddings of the numbers (TabM-dagger);
  - packed:    k = 5 independent 2 x 32 ReLU MLPs ("tabm-packed": the project's
               architecture, under this loop, as a control).
Not the product: TabM's shared weights cannot keep a best epoch per member (KeptMembers), so
it would replace the network, not join it. Prints test NLL per split and fit seconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import TABLES, params_for, prepared_splits, print_rows, table_overrides

PATIENCE = 16
MAX_EPOCHS = 1000
ARMS = ("tabm", "tabm-ple", "packed")


def model_for(arm: str, encoder, train_numeric: np.ndarray):
    import rtdl_num_embeddings
    import tabm
    import torch

    numeric = encoder.numeric_dim
    common = {"n_num_features": numeric, "cat_cardinalities": encoder.cardinalities,
              "d_out": 2}
    if arm == "packed":
        return tabm.TabM.make(**common, k=5, n_blocks=2, d_block=32, dropout=0.0,
                              arch_type="tabm-packed")
    if arm == "tabm-ple" and numeric:
        bins = rtdl_num_embeddings.compute_bins(torch.as_tensor(train_numeric), n_bins=16)
        embeddings = rtdl_num_embeddings.PiecewiseLinearEmbeddings(bins, 16, activation=False,
                                                                   version="B")
        return tabm.TabM.make(**common, k=32, n_blocks=2, d_block=256,
                              num_embeddings=embeddings)
    return tabm.TabM.make(**common, k=32, n_blocks=3, d_block=256)


def members(out):
    """TabM's output [B, k, 2] -> each member's (mu, sigma) as the project's network gives
    them, [k, B] (a softplus scale above the default floor)."""
    import torch.nn.functional as F

    return out[..., 0].T, F.softplus(out[..., 1]).T + 1e-4


def fit_and_score(arm: str, data: dict, params, seed: int) -> tuple[float, float, int]:
    import torch

    from deepnormal import metrics
    from deepnormal.budget import batch_size
    from deepnormal.family import family_named
    from deepnormal.network import gaussian_nll_z, mixture_moments
    from deepnormal.preprocessing import TableEncoder

    torch.manual_seed(seed)
    train, val, test = data["train"], data["val"], data["test"]
    family = train.family if train.family in ("normal", "lognormal") else "normal"
    encoder = TableEncoder.fit(train, family=family,
                               min_category_rows=params.data.min_category_rows,
                               log_skewed=params.model.log_skewed)

    def tensors(split):
        encoded = encoder.encode(split.frame)
        num = torch.as_tensor(encoded.numeric) if encoder.numeric_dim else None
        cat = torch.as_tensor(encoded.codes) if encoder.cardinalities else None
        return num, cat

    (xn, xc), (vn, vc), (tn, tc) = tensors(train), tensors(val), tensors(test)
    y = torch.as_tensor(encoder.target_z(train.target), dtype=torch.float32)
    y_val = torch.as_tensor(encoder.target_z(val.target), dtype=torch.float32)
    model = model_for(arm, encoder, None if xn is None else xn.numpy())
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=3e-4)
    batch = batch_size(len(y), params.train)
    best, best_state, since, epochs_run = float("inf"), None, 0, 0
    start = time.perf_counter()

    def forward(num, cat, rows=None):
        pick = (lambda t: None if t is None else t[rows]) if rows is not None else (lambda t: t)
        return model(pick(num), pick(cat))

    while epochs_run < MAX_EPOCHS:
        epochs_run += 1
        model.train()
        for rows in torch.randperm(len(y)).split(batch):
            out = forward(xn, xc, rows)
            loss = gaussian_nll_z(y[rows], *members(out)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            score = float(gaussian_nll_z(y_val, *mixture_moments(*members(
                forward(vn, vc)))).mean())
        if score < best:
            best, since = score, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if since >= PATIENCE:
                break
    seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        mean, std = mixture_moments(*members(forward(tn, tc)))
    target = encoder.target
    loc = target.mean + target.std * mean.double().numpy()
    scale = target.std * std.double().numpy()
    found = metrics.score(test.target, family_named(family)(loc, scale), [0.5, 0.8, 0.95])
    return found["nll"], seconds, epochs_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", default=["deliveries", "txhousing", "hotels",
                                                       "gapminder"])
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    args = parser.parse_args()
    for name in args.tables:
        rows, results = [], {arm: [] for arm in args.arms}
        for split in range(args.splits):
            params = params_for(table_overrides(name) | {"generate.seed": split})
            with tempfile.TemporaryDirectory() as tmp:
                data = prepared_splits(params, Path(tmp))
            for arm in args.arms:
                nll, seconds, epochs = fit_and_score(arm, data, params, seed=0)
                results[arm].append((nll, seconds))
                print(f"  {name} split {split} {arm}: NLL {nll:.4f}, {epochs} epochs, "
                      f"{seconds:.0f} s", flush=True)
        for arm, found in results.items():
            rows.append([arm, " ".join(f"{n:.3f}" for n, _ in found),
                         f"{statistics.mean(n for n, _ in found):.3f}",
                         f"{statistics.mean(s for _, s in found):.0f}"])
        print_rows(f"{name} ({TABLES[name].path})", ["", "test NLL per split", "mean", "fit s"],
                   rows)


if __name__ == "__main__":
    main()
