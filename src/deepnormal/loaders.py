"""Mini-batches straight from in-memory tensors.

One fancy-index per batch (a BatchSampler handing whole index lists to a TensorDataset)
instead of collating `batch_size` single rows, so the data loader never dominates a step.
Under DDP each process draws its own shard of the training rows (DistributedSampler, built
here because Lightning's automatic sampler injection cannot wrap a batch-level sampler),
and every process scores the whole validation split, so all ranks agree on val_nll.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from deepnormal.data import Split


def tensors(split: Split) -> TensorDataset:
    # torch.tensor copies (as float32 it must anyway); the arrays may be read-only views.
    return TensorDataset(torch.tensor(split.features, dtype=torch.float32),
                         torch.tensor(split.target, dtype=torch.float32))


class _Batches(BatchSampler):
    """A BatchSampler that passes Lightning's per-epoch `set_epoch` on to its sampler: a
    DistributedSampler needs it for a new shuffle each epoch, and Lightning only looks for
    it on a loader's `sampler` (here, this object)."""

    def set_epoch(self, epoch: int) -> None:
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.set_epoch(epoch)


def batches(split: Split, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0,
            world_size: int = 1) -> DataLoader:
    """(x, y) mini-batches, reshuffled every epoch with a seeded generator when `shuffle`;
    with world_size > 1, this rank's shard of the rows."""
    dataset = tensors(split)
    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                     shuffle=shuffle, seed=seed)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=None,
                      sampler=_Batches(sampler, batch_size, drop_last=False))


class SplitData(pl.LightningDataModule):
    """Shuffled training mini-batches, sharded by the trainer's rank; the whole validation
    split as one batch. Loaders are built once the trainer knows its rank and world size."""

    def __init__(self, train: Split, val: Split, batch_size: int, seed: int) -> None:
        super().__init__()
        self.train, self.val = train, val
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self) -> DataLoader:
        return batches(self.train, self.batch_size, shuffle=True, seed=self.seed,
                       rank=self.trainer.global_rank, world_size=self.trainer.world_size)

    def val_dataloader(self) -> DataLoader:
        return batches(self.val, len(self.val), shuffle=False)
