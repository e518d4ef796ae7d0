"""The SSD training transform: GluonCV's, with its constrained random crop vectorised."""
import random

import mxnet as mx
import numpy as np
from gluoncv.data.transforms.experimental.bbox import random_crop_with_constraints as gluoncv_crop

from magiccards.train import models
from magiccards.train.detection_transform import SSDTrainTransform, random_crop_with_constraints

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


def test_transform_gives_image_and_ssd_targets():
    net = models.build("detection", "ssd_300_mobilenet0.25", ["a", "b", "c"], 128)
    with mx.autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, 128, 128)))
    transform = SSDTrainTransform(128, 128, anchors, iou_thresh=0.5)
    image = mx.nd.array(np.random.default_rng(2).integers(0, 255, (320, 320, 3)), dtype="uint8")
    positives = 0
    for _ in range(10):
        img, cls_targets, box_targets = transform(image, BOXES.copy())
        assert img.shape == (3, 128, 128) and cls_targets.shape == (anchors.shape[1],)
        assert box_targets.shape == (anchors.shape[1], 4)
        positives += int((cls_targets > 0).sum().asscalar())
        assert set(np.unique(cls_targets.asnumpy())) <= {0, 1, 2, 3}
    assert positives > 0
