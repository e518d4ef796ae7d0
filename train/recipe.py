"""The part of a training recipe that `loop.fit` drives and both tasks share: the epoch sampler,
batching, the data-loader kind, metrics reset, and the start of each pass over the data."""
from __future__ import annotations

import os

import mxnet as mx
import numpy as np
from mxnet import gluon

from .hyperparameters import Hyperparameters
from .prefetch import Prefetcher
from .readers import ChannelData


def loader_threads(task: str) -> bool:
    """Whether data-loader workers are threads (else forked processes); MAGICCARDS_LOADER overrides.

    Classification decodes and augments in MXNet's C++ ops, which release the GIL: threads keep the
    compute as busy as processes (bench/bench_train.py) and avoid forking MXNet, which crashed a worker
    here once. GluonCV's SSD transform is mostly Python: it needs processes.
    """
    choice = os.environ.get("MAGICCARDS_LOADER")
    if choice in ("threads", "processes"):
        return choice == "threads"
    return task == "classification"


class EpochSampler(mx.gluon.data.Sampler):
    """Shuffled indices that depend only on (seed, epoch), optionally one shard of several workers.

    With `tickets`, index i of epoch e comes as e * length + i, for a dataset that seeds each item's
    augmentation from (seed, epoch, index) (`detection_transform.SeededItems`).
    """

    def __init__(self, length: int, seed: int, shuffle: bool = True, part: int = 0, parts: int = 1,
                 tickets: bool = False):
        self.length, self.seed, self.shuffle, self.part, self.parts = length, seed, shuffle, part, parts
        self.tickets = tickets
        self.epoch = 0

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.length) if self.shuffle \
            else np.arange(self.length)
        order = order[self.part::self.parts][:len(self)]
        if self.tickets:
            order = order + self.epoch * self.length
        return iter(order.tolist())

    def __len__(self):
        # every shard has the same length, so dist_sync workers take the same number of steps
        return self.length // self.parts




class Recipe:
    """A task's recipe: sampling and batching here; each task adds its loaders (`train_loader`,
    `val_loader`), `metrics`, `step(batch) -> images`, `train_metrics()` and `evaluate()`."""
    score_key = train_score_key = ""
    seeded_items = False  # the sampler hands out (epoch, index) tickets (see EpochSampler)

    def __init__(self, net, trainer, hp: Hyperparameters, classes: list[str], ctx, train: ChannelData,
                 val: ChannelData | None, part: int = 0, parts: int = 1):
        self.net, self.trainer, self.hp, self.classes, self.ctx = net, trainer, hp, classes, ctx
        self.train, self.val = train, val
        self.parts = parts  # data-parallel workers (hosts); each trains on its own shard
        self.sampler = EpochSampler(len(train.dataset), hp.seed, part=part, parts=parts, tickets=self.seeded_items)
        self.batch_sampler = gluon.data.BatchSampler(self.sampler, hp.mini_batch_size, "discard")
        self.train_loader = self.val_loader = None
        self.metrics: list = []

    def steps_per_epoch(self) -> int:
        return len(self.sampler) // self.hp.mini_batch_size

    def reset_metrics(self):
        for metric in self.metrics:
            metric.reset()

    def batches(self, epoch: int, start: int):
        """(index, batch) of epoch `epoch` from batch `start` on (a resumed epoch skips what it did)."""
        self.train.begin_pass()
        self.sampler.epoch = epoch
        for b, batch in enumerate(Prefetcher(self.train_loader)):
            if b >= start:
                yield b, batch

    def begin_validation(self) -> bool:
        """Start a pass over the validation data; False when the job has none."""
        if self.val is None or self.val_loader is None:
            return False
        self.val.begin_pass()
        return True
