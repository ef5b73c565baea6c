"""Mini-batches straight from in-memory tensors.

One fancy-index per batch (a BatchSampler feeding whole index lists to a TensorDataset)
instead of collating `batch_size` single rows: the data loader must not dominate a step.
Under DDP each process draws its own shard of the training rows (DistributedSampler) and
every process scores the whole validation split, so all ranks agree on val_nll.
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


class _EpochBatchSampler(BatchSampler):
    """A BatchSampler that passes Lightning's set_epoch on to a DistributedSampler, so each
    epoch gets a new shuffle."""

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)


def batches(split: Split, batch_size: int, shuffle: bool, seed: int = 0,
            rank: int = 0, world_size: int = 1) -> DataLoader:
    dataset = tensors(split)
    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                     shuffle=shuffle, seed=seed)
        batch_sampler = _EpochBatchSampler(sampler, batch_size, drop_last=False)
    else:
        if shuffle:
            sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
        else:
            sampler = SequentialSampler(dataset)
        batch_sampler = BatchSampler(sampler, batch_size, drop_last=False)
    return DataLoader(dataset, sampler=batch_sampler, batch_size=None)


class SplitData(pl.LightningDataModule):
    """Training batches sharded by the trainer's rank; the whole validation split as one
    batch. Loaders are built once the trainer knows its rank and world size."""

    def __init__(self, train: Split, val: Split, batch_size: int, seed: int) -> None:
        super().__init__()
        self.train, self.val = train, val
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self) -> DataLoader:
        return batches(self.train, self.batch_size, shuffle=True, seed=self.seed,
                       rank=self.trainer.global_rank, world_size=self.trainer.world_size)

    def val_dataloader(self) -> DataLoader:
        return batches(self.val, len(self.val), shuffle=False)
