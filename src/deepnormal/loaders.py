"""Mini-batches straight from in-memory tensors.

One fancy-index per batch (a BatchSampler feeding whole index lists to a TensorDataset)
instead of collating `batch_size` single rows: the data loader must not dominate a step.
"""

from __future__ import annotations

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from deepnormal.data import Split


def tensors(split: Split) -> TensorDataset:
    # torch.tensor copies (as float32 it must anyway); the arrays may be read-only views.
    return TensorDataset(torch.tensor(split.features, dtype=torch.float32),
                         torch.tensor(split.target, dtype=torch.float32))


def batches(split: Split, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    dataset = tensors(split)
    if shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(dataset, sampler=BatchSampler(sampler, batch_size, drop_last=False),
                      batch_size=None)
