"""GluonCV's SSD training transform with its random crop and its target generator vectorised.

`gluoncv.data.transforms.experimental.bbox.random_crop_with_constraints` draws up to 6 x 50 crops one
at a time in Python and was 5.5 of the transform's 12 ms per image here (bench/bench_train.py
pipeline measures what that costs the training step). `random_crop_with_constraints` below draws
them in one batch from the same distribution and applies the same rule: per IoU constraint, the
first crop that satisfies it is a candidate; one candidate that keeps a box centre wins.
"""
from __future__ import annotations

import random

import mxnet as mx
import numpy as np
from gluoncv.data.transforms import bbox as tbbox
from gluoncv.data.transforms import experimental
from gluoncv.data.transforms import image as timage
from gluoncv.utils.bbox import bbox_iou

from magiccards.model_dir import MEAN, STD

from .hyperparameters import DETECTION_AUGMENTATIONS

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


class SSDTrainTransform:
    """GluonCV's SSD training transform (`SSDDefaultTrainTransform`'s steps, faster).

    Returns the normalised CHW image, the class targets and the box targets of the network's anchors
    (`SSDTargets`, the same as GluonCV's in a fifth of the time). The image is float16: it holds the
    8-bit source exactly enough (normalised steps of 0.017, float16 resolves 0.002 at 2.6), and the
    batch that crosses from the loader process to the trainer is half the bytes to map and free
    (bench/bench_train.py pipeline); the recipe casts it back to float32 on the training device.

    `augmentation`: "ssd" all of it (colour jitter, expand, IoU-constrained crop, resize, flip);
    "color" colour jitter and resize only; "none" resize only, for data that already varies in scale,
    position and lighting (such as `synth` scenes).
    """

    def __init__(self, width: int, height: int, anchors, iou_thresh: float = 0.5, augmentation: str = "ssd",
                 mean=MEAN, std=STD):
        if augmentation not in DETECTION_AUGMENTATIONS:
            raise ValueError(f"augmentation {augmentation!r} is not one of {', '.join(DETECTION_AUGMENTATIONS)}")
        self.width, self.height, self.augmentation = width, height, augmentation
        self._mean, self._std, self._fill = mean, std, [m * 255 for m in mean]
        self.targets = SSDTargets(anchors, iou_thresh)
        self._rng = np.random.default_rng()  # SeededItems reseeds it for every image

    def seed(self, key) -> None:
        """Seed this transform's random draws, and the global ones GluonCV's parts use, from `key`."""
        self._rng = np.random.default_rng(key)
        random.seed(int(self._rng.integers(2 ** 63)))
        np.random.seed(int(self._rng.integers(2 ** 32)))

    def __call__(self, src, label):
        label = np.asarray(label, dtype=np.float32)[:, :5]
        img = src if self.augmentation == "none" else experimental.image.random_color_distort(src)
        if self.augmentation == "ssd":
            img, label = self._geometry(img, label)
        h, w, _ = img.shape
        if (w, h) != (self.width, self.height):
            img = timage.imresize(img, self.width, self.height, interp=1)
            label = tbbox.resize(label, (w, h), (self.width, self.height))
        img = mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean=self._mean, std=self._std)
        return (img.astype(np.float16), *self.targets(label))

    def _geometry(self, img, bbox):
        """Expand (zoom out), constrained crop (zoom in), resize with a random filter, flip."""
        if self._rng.random() > 0.5:
            img, expand = timage.random_expand(img, fill=self._fill)
            bbox = tbbox.translate(bbox, x_offset=expand[0], y_offset=expand[1])
        h, w, _ = img.shape
        bbox, (x0, y0, cw, ch) = random_crop_with_constraints(bbox, (w, h), self._rng)
        img = mx.image.fixed_crop(img, x0, y0, cw, ch)
        h, w, _ = img.shape
        img = timage.imresize(img, self.width, self.height, interp=int(self._rng.integers(5)))
        bbox = tbbox.resize(bbox, (w, h), (self.width, self.height))
        img, flips = timage.random_flip(img, px=0.5)
        return img, tbbox.flip(bbox, (self.width, self.height), flip_x=flips[0])


class SeededItems(mx.gluon.data.Dataset):
    """Item `epoch * len(dataset) + i` (an `EpochSampler` ticket) is item i through `transform`, seeded
    from (seed, epoch, i): the same augmentation whichever loader process draws it, in any run with
    that seed, and again when a job resumes mid-epoch."""

    def __init__(self, dataset, transform: SSDTrainTransform, seed: int):
        self._dataset, self._transform, self._seed = dataset, transform, seed

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, ticket):
        epoch, i = divmod(int(ticket), len(self._dataset))
        self._transform.seed([self._seed, epoch, i])
        return self._transform(*self._dataset[i])


class SSDTargets:
    """GluonCV's `SSDTargetGenerator` for one image, as the SSD transform uses it (no sampling), in NumPy.

    Same rule: global greedy bipartite matching gives every box its best anchor (and anchors tied
    with a box's best IoU), then every other anchor with IoU >= `iou_thresh` takes its best box; the
    class target is box class + 1 (0 background) and the box target the centre offsets and log sizes
    over `box_norm`. GluonCV's version runs a dozen small MXNet ops: 2.3 ms per image here, this 0.5.
    """

    def __init__(self, anchors, iou_thresh: float = 0.5, box_norm=(0.1, 0.1, 0.2, 0.2)):
        centre = anchors.asnumpy() if isinstance(anchors, mx.nd.NDArray) else np.asarray(anchors)
        centre = centre.astype(np.float32).reshape(-1, 4)  # (x, y, w, h) as the SSD network gives them
        half = centre[:, 2:] / 2
        self._corners = np.hstack([centre[:, :2] - half, centre[:, :2] + half])
        size = self._corners[:, 2:] - self._corners[:, :2]  # back to centre form, rounded as GluonCV's are
        self._centre = np.hstack([self._corners[:, :2] + size * 0.5, size])
        self._area = size.prod(axis=1)
        self.iou_thresh, self.box_norm = iou_thresh, np.asarray(box_norm, np.float32)

    def _iou(self, boxes):
        lt = np.maximum(self._corners[:, None, :2], boxes[None, :, :2])
        rb = np.minimum(self._corners[:, None, 2:], boxes[None, :, 2:4])
        inter = np.clip(rb - lt, 0, None).prod(axis=2)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        union = self._area[:, None] + area[None, :] - inter
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)  # (anchors, boxes)

    def _match(self, iou):
        match = np.full(len(iou), -1)
        if iou.shape[1] == 0:
            return match
        free = iou.copy()
        for _ in range(iou.shape[1]):  # global greedy: the best remaining (anchor, box) pair first
            a, b = np.unravel_index(np.argmax(free), free.shape)
            if free[a, b] <= 1e-12:
                break
            match[a] = b
            free[a, :] = -1
            free[:, b] = -1
        best = iou.argmax(axis=1)
        best_iou = iou[np.arange(len(iou)), best]
        tied = best_iou + 1e-12 >= iou.max(axis=0)[best]  # as good as the box's best anchor
        match = np.where(match < 0, np.where(tied, best, -1), match)
        return np.where(match < 0, np.where(best_iou >= self.iou_thresh, best, -1), match)

    def __call__(self, boxes: np.ndarray):
        """(class targets (anchors,), box targets (anchors, 4)) for boxes (n, 5) in input pixels."""
        boxes = np.asarray(boxes, np.float32)
        match = self._match(self._iou(boxes))
        positive = match >= 0
        cls_targets = np.zeros(len(match), np.float32)
        box_targets = np.zeros((len(match), 4), np.float32)
        if positive.any():
            g = boxes[match[positive], :4]
            a = self._centre[positive]
            gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
            gx, gy = g[:, 0] + gw * 0.5, g[:, 1] + gh * 0.5
            with np.errstate(divide="ignore"):
                box_targets[positive] = np.stack([(gx - a[:, 0]) / a[:, 2], (gy - a[:, 1]) / a[:, 3],
                                                  np.log(gw / a[:, 2]), np.log(gh / a[:, 3])], axis=1) / self.box_norm
            cls_targets[positive] = boxes[match[positive], 4] + 1
        return cls_targets, box_targets
