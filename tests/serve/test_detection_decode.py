"""The NumPy tail of a detection export replays MXNet's own box_decode and box_nms exactly."""
import mxnet as mx
import numpy as np
import pytest
from magiccards.serve.detection_decode import DecodeRules, decode, decode_boxes, nms_one


def _anchors(rng, n):
    centre = rng.uniform(0, 256, (n, 2))
    size = rng.uniform(8, 120, (n, 2))
    return np.concatenate([centre, size], 1).astype(np.float32)


@pytest.mark.parametrize("clip", [-1.0, 0.5])
def test_box_decoding_is_mxnets(clip):
    rng = np.random.RandomState(0)
    anchors, offsets = _anchors(rng, 300), rng.normal(0, 2, (2, 300, 4)).astype(np.float32)
    rules = DecodeRules(clip=clip)
    want = mx.nd.contrib.box_decode(mx.nd.array(offsets), mx.nd.array(anchors[None]), *rules.std, clip=clip,
                                    format="center").asnumpy()
    assert np.abs(decode_boxes(offsets, anchors, rules) - want).max() < 1e-3


@pytest.mark.parametrize("force_suppress", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_nms_keeps_what_box_nms_keeps(seed, force_suppress):
    """Clustered boxes of three classes (so that suppression really happens), some below the threshold,
    some with id -1, more candidates than topk: the same rows, in the same order, padded the same."""
    rng = np.random.RandomState(seed)
    n = 600
    centres = rng.uniform(40, 200, (12, 2))[rng.randint(0, 12, n)] + rng.normal(0, 6, (n, 2))
    sizes = rng.uniform(20, 60, (n, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], 1).astype(np.float32)
    ids = rng.randint(-1, 3, n).astype(np.float32)
    scores = rng.permutation(n).astype(np.float32) / n  # distinct: the order of ties is MXNet's own business
    rules = DecodeRules(overlap_thresh=0.45, valid_thresh=0.05, topk=400, keep=100, force_suppress=force_suppress)
    data = np.concatenate([ids[:, None], scores[:, None], boxes], 1)[None]
    want = mx.nd.contrib.box_nms(mx.nd.array(data), overlap_thresh=0.45, valid_thresh=0.05, topk=400, coord_start=2,
                                 score_index=1, id_index=0, force_suppress=force_suppress).asnumpy()[0, :100]
    got = nms_one(ids, scores, boxes, rules)
    assert (want[:, 0] >= 0).sum() == (got[:, 0] >= 0).sum() > 10
    assert np.abs(got - want).max() < 1e-4


def test_decode_is_the_per_class_decoder_then_nms():
    """decode() = GluonCV's MultiPerClassDecoder (class-major candidates) + box_decode + box_nms, in MXNet."""
    rng = np.random.RandomState(1)
    a, classes = 400, 3
    anchors = _anchors(rng, a)
    logits = rng.normal(0, 2, (2, a, classes + 1)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    offsets = rng.normal(0, 1, (2, a, 4)).astype(np.float32)
    rules = DecodeRules()
    boxes = mx.nd.contrib.box_decode(mx.nd.array(offsets), mx.nd.array(anchors[None]), *rules.std, format="center")
    scores = mx.nd.array(probs)[:, :, 1:]
    per_class = []
    for c in range(classes):
        s = scores[:, :, c:c + 1]
        ids = mx.nd.where(s > rules.class_thresh, mx.nd.ones_like(s) * c, mx.nd.ones_like(s) * -1)
        per_class.append(mx.nd.concat(ids, mx.nd.where(s > rules.class_thresh, s, mx.nd.zeros_like(s)), boxes, dim=-1))
    want = mx.nd.contrib.box_nms(mx.nd.concat(*per_class, dim=1), overlap_thresh=rules.overlap_thresh,
                                 valid_thresh=rules.valid_thresh, topk=rules.topk, coord_start=2, score_index=1,
                                 id_index=0, force_suppress=False).asnumpy()[:, :rules.keep]
    ids, got_scores, got_boxes = decode(probs, offsets, anchors, rules)
    assert np.array_equal(ids[..., 0], want[..., 0])
    assert np.abs(got_scores[..., 0] - want[..., 1]).max() < 1e-6
    assert np.abs(got_boxes - want[..., 2:]).max() < 1e-3


def test_best_class_only_is_multibox_detections_rule():
    """With best_class_only, decode() answers as MXNet's MultiBoxDetection (the layer a DeepLens graph ends in):
    each anchor's best foreground class only, then per-class NMS; without it, runner-up classes come too."""
    rng = np.random.RandomState(2)
    a, classes, side = 500, 4, 256.0
    anchors = _anchors(rng, a)
    logits = rng.normal(0, 2, (1, a, classes + 1)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    offsets = rng.normal(0, 1, (1, a, 4)).astype(np.float32)
    rules = DecodeRules(best_class_only=True, topk=400, keep=400)
    corners = np.concatenate([anchors[:, :2] - anchors[:, 2:] / 2, anchors[:, :2] + anchors[:, 2:] / 2], 1) / side
    want = mx.nd.contrib.MultiBoxDetection(
        mx.nd.array(probs.transpose(0, 2, 1)), mx.nd.array(offsets.reshape(1, -1)), mx.nd.array(corners[None]),
        clip=False, threshold=rules.class_thresh, background_id=0, nms_threshold=rules.overlap_thresh,
        force_suppress=False, variances=rules.std, nms_topk=rules.topk).asnumpy()[0]
    want = want[want[:, 0] >= 0]
    want = want[np.argsort(-want[:, 1], kind="stable")]
    ids, scores, boxes = decode(probs, offsets, anchors, rules)
    valid = ids[0, :, 0] >= 0
    got = np.concatenate([ids[0], scores[0], boxes[0] / side], 1)[valid]
    assert len(got) == len(want) > 50
    assert np.array_equal(got[:, 0], want[:, 0])
    assert np.abs(got[:, 1:] - want[:, 1:]).max() < 1e-4
    wide = {"topk": 1 << 30, "keep": classes * a}  # every candidate, to count them
    best_only = (decode(probs, offsets, anchors, DecodeRules(best_class_only=True, **wide))[0] >= 0).sum()
    every_class = (decode(probs, offsets, anchors, DecodeRules(**wide))[0] >= 0).sum()
    assert every_class > best_only  # runner-up classes of the same anchors survive NMS too
