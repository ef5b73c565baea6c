"""Mini-batches straight from in-memory tensors.

One fancy-index per batch (a BatchSampler feeding whole index lists to a TensorDataset)
instead of collating `batch_size` single rows: the data loader must not dominate a step.
Training hands Lightning a *group* of consecutive mini-batches per step (the module takes
one optimiser step for each), because Lightning's fixed cost per step, about 0.8 ms on our
CPUs, is half a step of the default network (benchmarks/loop_overhead.py); the same idea
as Keras's `steps_per_execution`. The mini-batches and their order are unchanged.
Under DDP each process draws its own shard of the training rows (DistributedSampler) and
every process scores the whole validation split, so all ranks agree on val_nll.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    TensorDataset,
)

from deepnormal.data import Split


def tensors(split: Split) -> TensorDataset:
    # torch.tensor copies (as float32 it must anyway); the arrays may be read-only views.
    return TensorDataset(torch.tensor(split.features, dtype=torch.float32),
                         torch.tensor(split.target, dtype=torch.float32))


# Mini-batches per Lightning step in training; 8 puts Lightning's cost per mini-batch
# under a tenth of a millisecond here, and an epoch of a small data set is still several steps.
BATCHES_PER_STEP = 8


class _Groups(Sampler):
    """Yields lists of up to `size` consecutive index lists of a BatchSampler."""

    def __init__(self, batch_sampler: BatchSampler, size: int) -> None:
        self.batch_sampler, self.size = batch_sampler, size

    def __iter__(self):
        group = []
        for indices in self.batch_sampler:
            group.append(indices)
            if len(group) == self.size:
                yield group
                group = []
        if group:
            yield group

    def __len__(self) -> int:
        return -(-len(self.batch_sampler) // self.size)

    def set_epoch(self, epoch: int) -> None:
        # Lightning calls this every epoch; a DistributedSampler needs it for a new shuffle.
        if isinstance(self.batch_sampler.sampler, DistributedSampler):
            self.batch_sampler.sampler.set_epoch(epoch)


class _GroupedTensors(Dataset):
    """Indexed by a list of index lists: a list of (x, y) mini-batches."""

    def __init__(self, dataset: TensorDataset) -> None:
        self.dataset = dataset

    def __getitem__(self, group: list[list[int]]) -> list[tuple[torch.Tensor, ...]]:
        return [self.dataset[indices] for indices in group]


def _batch_sampler(dataset: TensorDataset, batch_size: int, shuffle: bool, seed: int,
                   rank: int, world_size: int) -> BatchSampler:
    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                     shuffle=shuffle, seed=seed)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    return BatchSampler(sampler, batch_size, drop_last=False)


def batches(split: Split, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """(x, y) mini-batches: one per Lightning step (the LR range test, validation)."""
    dataset = tensors(split)
    return DataLoader(dataset, batch_size=None,
                      sampler=_batch_sampler(dataset, batch_size, shuffle, seed, 0, 1))


def batch_groups(split: Split, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1) -> DataLoader:
    """Shuffled training mini-batches, BATCHES_PER_STEP of them to a Lightning step (a list
    of (x, y)); under DDP, this rank's shard of the rows."""
    dataset = tensors(split)
    sampler = _batch_sampler(dataset, batch_size, True, seed, rank, world_size)
    return DataLoader(_GroupedTensors(dataset), batch_size=None,
                      sampler=_Groups(sampler, BATCHES_PER_STEP))


class SplitData(pl.LightningDataModule):
    """Groups of training mini-batches sharded by the trainer's rank; the whole validation
    split as one batch. Loaders are built once the trainer knows its rank and world size."""

    def __init__(self, train: Split, val: Split, batch_size: int, seed: int) -> None:
        super().__init__()
        self.train, self.val = train, val
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self) -> DataLoader:
        return batch_groups(self.train, self.batch_size, self.seed,
                            rank=self.trainer.global_rank, world_size=self.trainer.world_size)

    def val_dataloader(self) -> DataLoader:
        return batches(self.val, len(self.val), shuffle=False)
