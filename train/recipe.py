"""The part of a training recipe that `loop.fit` drives and both tasks share."""
from __future__ import annotations

from mxnet import gluon

from .hyperparameters import Hyperparameters
from .loop import EpochSampler
from .prefetch import Prefetcher


class Recipe:
    """A task's recipe: sampling and batching here; each task adds its loaders (`train_loader`,
    `val_loader`), `metrics`, `step(batch) -> images`, `train_metrics()` and `evaluate()`."""
    score_key = train_score_key = ""
    seeded_items = False  # the sampler hands out (epoch, index) tickets (see loop.EpochSampler)

    def __init__(self, net, trainer, hp: Hyperparameters, classes: list[str], ctx, train_size: int,
                 part: int = 0, parts: int = 1):
        self.net, self.trainer, self.hp, self.classes, self.ctx = net, trainer, hp, classes, ctx
        self.parts = parts  # data-parallel workers (hosts); each trains on its own shard
        self.sampler = EpochSampler(train_size, hp.seed, part=part, parts=parts, tickets=self.seeded_items)
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
        self.sampler.epoch = epoch
        for b, batch in enumerate(Prefetcher(self.train_loader)):
            if b >= start:
                yield b, batch
