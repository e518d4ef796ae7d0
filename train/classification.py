"""Image classification recipe: transforms, the training step, validation with a confusion matrix."""
from __future__ import annotations

import threading

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon.data.vision import transforms

from magiccards.model_dir import MEAN, STD

from .hyperparameters import Hyperparameters
from .readers import ChannelData
from .recipe import Recipe, loader_threads
from .reporting import say


def train_transform(hp: Hyperparameters) -> transforms.Compose:
    """The built-in augmentation types: none, crop, crop_color, crop_color_transform."""
    _, h, w = hp.image_shape
    steps = []
    if hp.resize:
        steps.append(transforms.Resize(hp.resize, keep_ratio=True))
    if hp.augmentation_type:
        steps += [transforms.RandomResizedCrop((w, h), scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3)),
                  transforms.RandomFlipLeftRight()]
        if hp.augmentation_type in ("crop_color", "crop_color_transform"):
            steps += colour_jitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05)
        if hp.augmentation_type == "crop_color_transform":
            steps.append(transforms.RandomLighting(0.1))
    else:
        steps += [transforms.Resize(min(h, w), keep_ratio=True), transforms.CenterCrop((w, h))]
    steps.append(transforms.ToTensor())
    if hp.augmentation_type == "crop_color_transform":
        steps.append(transforms.RandomRotation((-15, 15), zoom_in=True))  # MXNet rotates float CHW tensors only
    return transforms.Compose(steps + [transforms.Normalize(MEAN, STD)])


def colour_jitter(brightness: float, contrast: float, saturation: float, hue: float) -> list:
    """What transforms.RandomColorJitter does, as its four separate ops: MXNet's fused random_color_jitter op
    crashes the process (a segmentation fault) when two loader threads run it at once; the separate ops do not."""
    return [transforms.RandomBrightness(brightness), transforms.RandomContrast(contrast),
            transforms.RandomSaturation(saturation), transforms.RandomHue(hue)]


class OnePerThread:
    """`build(*args)` built once in each thread that calls it, then called there: the loader's threads never share one
    transform. `transforms.Compose` hybridizes its steps into one cached graph, and MXNet's cached graphs are not
    thread-safe: run from several loader threads at once, the one graph corrupted the process's memory (segmentation
    faults, at times much later). Picklable for loader processes (each builds its own)."""

    def __init__(self, build, *args):
        self._build, self._args = build, args
        self._local = threading.local()

    def __call__(self, *inputs):
        transform = getattr(self._local, "transform", None)
        if transform is None:
            transform = self._local.transform = self._build(*self._args)
        return transform(*inputs)

    def __getstate__(self):
        return {"_build": self._build, "_args": self._args}

    def __setstate__(self, state):
        self.__dict__.update(state, _local=threading.local())


def eval_transform(hp: Hyperparameters) -> transforms.Compose:
    _, h, w = hp.image_shape
    steps = [transforms.Resize(hp.resize, keep_ratio=True)] if hp.resize else []
    steps += [transforms.Resize(min(h, w), keep_ratio=True), transforms.CenterCrop((w, h)),
              transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    return transforms.Compose(steps)


class ClassificationRecipe(Recipe):
    score_key = "validation_accuracy"
    train_score_key = "train_accuracy"

    def __init__(self, net, trainer, train: ChannelData, val: ChannelData | None, hp: Hyperparameters,
                 classes: list[str], ctx, num_workers: int = 0, part: int = 0, parts: int = 1):
        super().__init__(net, trainer, hp, classes, ctx, train, val, part, parts)
        self.dtype = "float16" if hp.precision_dtype == "float16" and ctx[0].device_type == "gpu" else "float32"
        if hp.precision_dtype != self.dtype:
            say("precision_dtype=float16 applies on GPUs only: training in float32 on the CPU")
        threads = loader_threads("classification")
        self.train_loader = gluon.data.DataLoader(train.dataset.transform_first(OnePerThread(train_transform, hp)),
                                                  batch_sampler=self.batch_sampler, num_workers=num_workers,
                                                  thread_pool=threads)
        if val is not None:
            self.val_loader = gluon.data.DataLoader(val.dataset.transform_first(OnePerThread(eval_transform, hp)),
                                                    batch_size=hp.mini_batch_size, shuffle=False, last_batch="keep",
                                                    num_workers=num_workers, thread_pool=threads)
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()
        self.weights = None
        if hp.use_weighted_loss and train.class_counts:
            counts = np.array([max(1, train.class_counts.get(i, 0)) for i in range(len(classes))], dtype=np.float32)
            self.weights = mx.nd.array(counts.sum() / (len(classes) * counts))
        self.acc, self.loss_metric = mx.metric.Accuracy(), mx.metric.Loss()
        self.metrics = [self.acc, self.loss_metric]
        if self.dtype == "float16":
            net.cast("float16")

    def step(self, batch) -> int:
        data = gluon.utils.split_and_load(batch[0].astype(self.dtype), self.ctx, even_split=False)
        label = gluon.utils.split_and_load(batch[1], self.ctx, even_split=False)
        with autograd.record():
            outputs = [self.net(x) for x in data]
            losses = []
            for out, y in zip(outputs, label):
                loss = self.loss(out.astype("float32"), y)
                if self.weights is not None:
                    loss = loss * self.weights.as_in_context(y.context)[y]
                losses.append(loss)
        autograd.backward(losses)
        self.trainer.step(batch[0].shape[0] * self.parts)  # gradients are summed over `parts` workers
        self.acc.update(label, outputs)
        self.loss_metric.update(None, losses)
        return batch[0].shape[0]

    def train_metrics(self) -> dict:
        return {"train_accuracy": float(self.acc.get()[1]), "train_loss": float(self.loss_metric.get()[1])}

    def predict(self, loader):
        """(true labels, class scores) over a loader."""
        truth, scores = [], []
        for data, label in loader:
            parts = gluon.utils.split_and_load(data.astype(self.dtype), self.ctx, even_split=False)
            scores += [self.net(x).astype("float32").asnumpy() for x in parts]
            truth.append(label.asnumpy())
        return np.concatenate(truth).astype(int), np.concatenate(scores)

    def evaluate(self) -> dict:
        if not self.begin_validation():
            return {}
        truth, scores = self.predict(self.val_loader)
        k = min(self.hp.top_k, scores.shape[1])
        top_k = np.argsort(-scores, axis=1)[:, :k]
        predicted = top_k[:, 0]
        self.confusion = np.zeros((len(self.classes), len(self.classes)), dtype=np.int64)
        np.add.at(self.confusion, (truth, predicted), 1)
        return {"validation_accuracy": float((predicted == truth).mean()),
                "validation_top_k": float((top_k == truth[:, None]).any(axis=1).mean())}
