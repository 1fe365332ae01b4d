"""A shuffling sampler that is reproducible per epoch, rank-aware, and yields (index, epoch)."""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """Shuffles with (seed, epoch) and shards across DDP ranks like DistributedSampler.

    With ``pad`` (training), every rank gets the same number of items, the last ones repeated by
    wrapping, so ranks step together. Without it (evaluation), ranks split the items exactly and
    every item is seen once in all; the last ranks may get one item fewer.

    Lightning calls ``set_epoch`` at each epoch start. Yielding the epoch alongside the index lets
    the dataset draw its augmentation from (seed, epoch, index), which survives worker processes
    and resumes.
    """

    def __init__(self, size: int, shuffle: bool, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, pad: bool = True):
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        distributed = dist.is_available() and dist.is_initialized()
        self.world_size = world_size or (dist.get_world_size() if distributed else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if distributed else 0)
        self.pad = pad
        self.per_rank = math.ceil(size / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.pad:
            return self.per_rank
        return len(range(self.rank, self.size, self.world_size))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
                 if self.shuffle else np.arange(self.size))
        total = self.per_rank * self.world_size if self.pad else self.size
        if total > self.size:  # pad by wrapping, as DistributedSampler does, so ranks stay in step
            order = np.concatenate([order, order[: total - self.size]])
        for i in order[self.rank: total: self.world_size]:
            yield int(i), self.epoch
