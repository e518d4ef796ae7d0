"""GluonCV's SSD training transform with its random crop vectorised.

`gluoncv.data.transforms.experimental.bbox.random_crop_with_constraints` draws up to 6 x 50 crops one
at a time in Python and was 5.5 of the transform's 12 ms per image here (bench/bench_train.py
pipeline measures what that costs the training step). `random_crop_with_constraints` below draws
them in one batch from the same distribution and applies the same rule: per IoU constraint, the
first crop that satisfies it is a candidate; one candidate that keeps a box centre wins.
"""
from __future__ import annotations

import os
import random

import mxnet as mx
import numpy as np
from gluoncv.data.transforms import bbox as tbbox
from gluoncv.data.transforms import experimental
from gluoncv.data.transforms import image as timage
from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform
from gluoncv.utils.bbox import bbox_iou

CONSTRAINTS = ((0.1, None), (0.3, None), (0.5, None), (0.7, None), (0.9, None), (None, 1))


def random_crop_with_constraints(bbox: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
                                 min_scale: float = 0.3, max_scale: float = 1.0, max_aspect_ratio: float = 2.0,
                                 constraints=CONSTRAINTS, max_trial: int = 50):
    """(cropped boxes, (x, y, w, h)) like GluonCV's function of the same name, SSD's crop sampler."""
    w, h = size
    n = len(constraints) * max_trial
    scale = rng.uniform(min_scale, max_scale, n)
    ratio = rng.uniform(np.maximum(1 / max_aspect_ratio, scale * scale), np.minimum(max_aspect_ratio, 1 / (scale * scale)))
    crop_h = np.minimum((h * scale / np.sqrt(ratio)).astype(int), h - 1)
    crop_w = np.minimum((w * scale * np.sqrt(ratio)).astype(int), w - 1)
    crop_t = (rng.random(n) * (h - crop_h)).astype(int)
    crop_l = (rng.random(n) * (w - crop_w)).astype(int)
    crops = np.stack([crop_l, crop_t, crop_w, crop_h], axis=1)
    if len(bbox) == 0:
        return bbox, tuple(int(v) for v in crops[0])
    corners = np.stack([crop_l, crop_t, crop_l + crop_w, crop_t + crop_h], axis=1)
    iou = bbox_iou(bbox[:, :4], corners).reshape(len(bbox), len(constraints), max_trial)
    low = np.array([-np.inf if lo is None else lo for lo, _ in constraints])[:, None]
    high = np.array([np.inf if hi is None else hi for _, hi in constraints])[:, None]
    ok = (iou.min(axis=0) >= low) & (iou.max(axis=0) <= high)  # constraints x trials
    first = ok.argmax(axis=1)
    candidates = [(0, 0, w, h)] + [tuple(int(v) for v in crops[c * max_trial + first[c]])
                                   for c in range(len(constraints)) if ok[c, first[c]]]
    while candidates:
        crop = candidates.pop(rng.integers(len(candidates)))
        boxes = tbbox.crop(bbox, crop, allow_outside_center=False)
        if boxes.size >= 1:
            return boxes, crop
    return bbox, (0, 0, w, h)


class SSDTrainTransform(SSDDefaultTrainTransform):
    """`SSDDefaultTrainTransform` (colour jitter, expand, constrained crop, resize, flip, SSD targets)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rng, self._pid = None, None

    def __call__(self, src, label):
        if self._pid != os.getpid():  # one stream per process: Python reseeds `random` in forked workers
            self._rng, self._pid = np.random.default_rng(random.getrandbits(64)), os.getpid()
        img = experimental.image.random_color_distort(src)
        if self._rng.random() > 0.5:
            img, expand = timage.random_expand(img, fill=[m * 255 for m in self._mean])
            bbox = tbbox.translate(label, x_offset=expand[0], y_offset=expand[1])
        else:
            bbox = label
        h, w, _ = img.shape
        bbox, (x0, y0, cw, ch) = random_crop_with_constraints(bbox, (w, h), self._rng)
        img = mx.image.fixed_crop(img, x0, y0, cw, ch)
        h, w, _ = img.shape
        img = timage.imresize(img, self._width, self._height, interp=int(self._rng.integers(5)))
        bbox = tbbox.resize(bbox, (w, h), (self._width, self._height))
        img, flips = timage.random_flip(img, px=0.5)
        bbox = tbbox.flip(bbox, (self._width, self._height), flip_x=flips[0])
        img = mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean=self._mean, std=self._std)
        cls_targets, box_targets, _ = self._target_generator(
            self._anchors, None, mx.nd.array(bbox[np.newaxis, :, :4]), mx.nd.array(bbox[np.newaxis, :, 4:5]))
        return img, cls_targets[0], box_targets[0]
