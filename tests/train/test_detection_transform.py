"""The SSD training transform (GluonCV's, its constrained random crop vectorised) and the batch targets."""
import random

import mxnet as mx
import numpy as np
import pytest
from gluoncv.data.transforms.experimental.bbox import (
    random_crop_with_constraints as gluoncv_crop,
)
from gluoncv.model_zoo.ssd.target import SSDTargetGenerator
from magiccards.train import models
from magiccards.train.detection_transform import (
    SeededItems,
    SSDTargets,
    SSDTrainTransform,
    random_crop_with_constraints,
)

BOXES = np.array([[30, 40, 120, 170, 0], [150, 60, 260, 210, 1], [200, 200, 300, 310, 2], [10, 250, 60, 300, 1]],
                 dtype=np.float32)
SIZE = (320, 320)


def _draws(crop, n=600):
    areas, kept = [], []
    for _ in range(n):
        boxes, (x, y, w, h) = crop()
        assert 0 <= x and 0 <= y and x + w <= SIZE[0] and y + h <= SIZE[1]
        assert len(boxes) >= 1 and (boxes[:, :4] >= 0).all()
        assert (boxes[:, [0, 2]] <= w).all() and (boxes[:, [1, 3]] <= h).all()  # in crop coordinates
        areas.append(w * h / (SIZE[0] * SIZE[1]))
        kept.append(len(boxes))
    return np.mean(areas), np.mean(kept), np.mean(np.array(areas) == 1.0)


def test_crop_samples_like_gluoncv():
    random.seed(0)
    rng = np.random.default_rng(0)
    np.random.seed(0)
    ours = _draws(lambda: random_crop_with_constraints(BOXES, SIZE, rng))
    theirs = _draws(lambda: gluoncv_crop(BOXES, SIZE))
    assert abs(ours[0] - theirs[0]) < 0.05, (ours, theirs)  # mean crop area
    assert abs(ours[1] - theirs[1]) < 0.3, (ours, theirs)  # boxes kept per crop
    assert abs(ours[2] - theirs[2]) < 0.08, (ours, theirs)  # share of uncropped images


def test_crop_without_boxes_is_a_valid_window():
    boxes, (x, y, w, h) = random_crop_with_constraints(np.zeros((0, 5), np.float32), SIZE, np.random.default_rng(1))
    assert boxes.shape == (0, 5) and 0 < w < SIZE[0] and 0 < h < SIZE[1] and x + w <= SIZE[0] and y + h <= SIZE[1]


def _anchors(size=128):
    net = models.build("detection", "ssd_300_mobilenet0.25", ["a", "b", "c"], size)
    with mx.autograd.train_mode():
        return net(mx.nd.zeros((1, 3, size, size)))[2]


def test_transform_gives_image_and_ssd_targets():
    anchors = _anchors()
    transform = SSDTrainTransform(128, 128, anchors)
    image = mx.nd.array(np.random.default_rng(2).integers(0, 255, (320, 320, 3)), dtype="uint8")
    positives = 0
    for _ in range(10):
        img, cls_targets, box_targets = transform(image, BOXES.copy())
        assert img.shape == (3, 128, 128) and img.dtype == np.float16 and cls_targets.shape == (anchors.shape[1],)
        assert box_targets.shape == (anchors.shape[1], 4)
        positives += int((cls_targets > 0).sum())
        assert set(np.unique(cls_targets)) <= {0, 1, 2, 3}
    assert positives > 0


def test_targets_equal_gluoncvs_target_generator():
    anchors = _anchors()
    theirs = SSDTargetGenerator(iou_thresh=0.5, stds=(0.1, 0.1, 0.2, 0.2), negative_mining_ratio=-1)
    ours = SSDTargets(anchors, iou_thresh=0.5)
    rng = np.random.default_rng(4)
    for n in (1, 1, 2, 3, 5, 8, 12):
        xy = rng.uniform(-10, 110, (n, 2))
        wh = rng.uniform(4, 90, (n, 2))
        boxes = np.hstack([np.clip(xy, 0, 128), np.clip(xy + wh, 1, 128), rng.integers(0, 3, (n, 1))])
        boxes = boxes.astype(np.float32)
        want_cls, want_box, _ = theirs(anchors, None, mx.nd.array(boxes[None, :, :4]), mx.nd.array(boxes[None, :, 4:]))
        cls_targets, box_targets = ours(boxes)
        np.testing.assert_array_equal(cls_targets, want_cls[0].asnumpy())
        np.testing.assert_allclose(box_targets, want_box[0].asnumpy(), atol=2e-4)
        assert (cls_targets > 0).sum() >= n  # every box has an anchor
    cls_targets, box_targets = ours(np.zeros((0, 5), np.float32))
    assert not cls_targets.any() and not box_targets.any()


def test_milder_augmentations_keep_the_boxes_where_they_are():
    image = mx.nd.array(np.random.default_rng(3).integers(0, 255, (320, 320, 3)), dtype="uint8")
    anchors = _anchors()
    full, none, color = (SSDTrainTransform(128, 128, anchors, augmentation=a) for a in ("ssd", "none", "color"))
    img, cls_targets, box_targets = none(image, BOXES.copy())
    want = SSDTargets(anchors)(BOXES * np.float32([0.4, 0.4, 0.4, 0.4, 1]))  # 320 -> 128 px
    np.testing.assert_array_equal(cls_targets, want[0])
    np.testing.assert_allclose(box_targets, want[1], atol=1e-4)
    assert (img == none(image, BOXES.copy())[0]).asnumpy().all()  # "none" is deterministic
    coloured = color(image, BOXES.copy())
    assert (coloured[1] == cls_targets).all() and not (coloured[0] == img).asnumpy().all()
    assert any(not (full(image, BOXES.copy())[1] == cls_targets).all() for _ in range(5))
    with pytest.raises(ValueError, match="ssd, color, none"):
        SSDTrainTransform(128, 128, anchors, augmentation="rotate")


def test_seeded_items_repeat_per_epoch_and_index():
    image = mx.nd.array(np.random.default_rng(6).integers(0, 255, (320, 320, 3)), dtype="uint8")
    data = mx.gluon.data.SimpleDataset([(image, BOXES.copy())] * 3)
    first = SeededItems(data, SSDTrainTransform(128, 128, _anchors()), seed=7)
    second = SeededItems(data, SSDTrainTransform(128, 128, _anchors()), seed=7)
    for ticket in (0, 2, 3, 5):  # epoch 0 items 0, 2; epoch 1 items 0, 2
        a, b = first[ticket], second[ticket]
        assert (a[0] == b[0]).asnumpy().all() and (a[1] == b[1]).all() and (a[2] == b[2]).all()
    draws = [first[t] for t in (0, 1, 3, 4)]  # the same image as items 0, 1 of epochs 0, 1: all differ
    assert len({d[0].asnumpy().tobytes() for d in draws}) == 4
