"""A detector's tail (box decoding, per-class NMS) appended to its ONNX heads, in standard ONNX ops.

The heads end in class probabilities (N, A, C+1, background first) and box offsets (N, A, 4). The tail
added here answers what MXNet's graph answers (serve/detection_decode.py says how, in NumPy):

  decode    centre + offset * std * size, size * exp(offset * std) (clipped when `clip` > 0), from the
            constant anchors; foreground probabilities at or under `class_thresh` score nothing (with
            `best_class_only`, every class but the anchor's best scores nothing);
  top k     the best `topk` (class, anchor) candidates over all classes, best first, equal scores in
            index order (the class-major order the NumPy tail sorts stably in): ONNX's TopK keeps that
            order itself (ONNX Runtime); for OpenVINO, whose converted TopK does not and whose stable
            TopK is slow, each candidate's place is counted (k x k comparisons; which of several
            candidates tied at the k-th score get in is then the runtime's choice);
  NMS       `NonMaxSuppression` over those candidates, each scored in its own class row only (one row
            when `force_suppress`): suppression at IoU > `overlap_thresh`, scores > `valid_thresh`;
  keep      the kept candidates in their score order, the first `keep`, padded with -1:
            ids (N, keep, 1), scores (N, keep, 1), boxes (N, keep, 4), the MXNet graph's outputs.

Every size is fixed when the tail is built (A, C, k), except the batch; the tail is float32 whatever the
heads' precision (it follows the INT8/FP16 heads, whose outputs are float32). ONNX Runtime and OpenVINO
(its NMS op) run it inside their graph: no NumPy after the network.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from magiccards.model_dir import TAIL_OUTPUTS as OUTPUTS
from magiccards.serve.detection_decode import DecodeRules

OPSET = 13


class _Builder:
    """Nodes and constants, named uniquely."""

    def __init__(self):
        self.nodes, self.constants, self._n = [], [], 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"tail_{stem}_{self._n}"

    def const(self, value, dtype=np.float32) -> str:
        from onnx import numpy_helper

        name = self.name("const")
        self.constants.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attributes):
        from onnx import helper

        names = [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=names[0], **attributes))
        return names[0] if outputs == 1 else names


def _decode_boxes(b: _Builder, offsets: str, anchors: np.ndarray, rules: DecodeRules) -> str:
    """Corner boxes (N, A, 4) from the offsets (N, A, 4) and centre-format anchors (A, 4)."""
    ax, ay, aw, ah = (anchors[None, :, i:i + 1].astype(np.float32) for i in range(4))  # (1, A, 1) each
    ox, oy, ow, oh = b.op("Split", offsets, b.const([1, 1, 1, 1], np.int64), outputs=4, axis=2)
    cx = b.op("Add", b.op("Mul", ox, b.const(rules.std[0] * aw)), b.const(ax))
    cy = b.op("Add", b.op("Mul", oy, b.const(rules.std[1] * ah)), b.const(ay))
    tw, th = b.op("Mul", ow, b.const(rules.std[2])), b.op("Mul", oh, b.const(rules.std[3]))
    if rules.clip > 0:
        tw, th = b.op("Min", tw, b.const(rules.clip)), b.op("Min", th, b.const(rules.clip))
    half_w = b.op("Mul", b.op("Exp", tw), b.const(aw / 2))
    half_h = b.op("Mul", b.op("Exp", th), b.const(ah / 2))
    return b.op("Concat", b.op("Sub", cx, half_w), b.op("Sub", cy, half_h), b.op("Add", cx, half_w),
                b.op("Add", cy, half_h), axis=2)


def _class_scores(b: _Builder, probabilities: str, classes: int, rules: DecodeRules) -> str:
    """Foreground scores (N, C, A), class-major; zero where a class does not count."""
    foreground = b.op("Slice", probabilities, b.const([1], np.int64), b.const([classes + 1], np.int64),
                      b.const([2], np.int64))  # (N, A, C)
    zero = b.const(0.0)
    if rules.best_class_only:
        best = b.op("ArgMax", foreground, axis=2, keepdims=1)  # (N, A, 1), the first of ties as NumPy's argmax
        is_best = b.op("Equal", best, b.const(np.arange(classes)[None, None, :], np.int64))
        foreground = b.op("Where", is_best, foreground, zero)
    counted = b.op("Greater", foreground, b.const(rules.class_thresh))
    return b.op("Transpose", b.op("Where", counted, foreground, zero), perm=[0, 2, 1])


def _permutation(b: _Builder, place: str, k: int) -> str:
    """The order (N, k) that puts element i at `place`[i] (N, k; a permutation of 0..k-1 in each row)."""
    zeros = b.op("Mul", place, b.const(0, np.int64))
    positions = b.op("Add", zeros, b.const(np.arange(k)[None, :], np.int64))
    return b.op("ScatterElements", zeros, place, positions, axis=1)


def _score_then_index_order(b: _Builder, score: str, index: str, k: int) -> str:
    """The order (N, k) of the candidates by score, highest first, equal scores by lower index: each one's place
    is how many others come before it (k x k comparisons: exact, where a stable sort of k values costs OpenVINO's
    TopK a third of a millisecond per 400)."""
    def pairs(value):  # (N, k, 1) candidate i against (N, 1, k) candidate j
        return b.op("Unsqueeze", value, b.const([2], np.int64)), b.op("Unsqueeze", value, b.const([1], np.int64))

    (si, sj), (ii, ij) = pairs(score), pairs(index)
    before = b.op("Or", b.op("Greater", sj, si), b.op("And", b.op("Equal", sj, si), b.op("Less", ij, ii)))
    place = b.op("ReduceSum", b.op("Cast", before, to=7), b.const([2], np.int64), keepdims=0)  # (N, k)
    return _permutation(b, place, k)


def _kept_first(b: _Builder, kept: str, k: int, keep: int) -> str:
    """The first `keep` of: the candidates with a score (> 0) in their order, then the others in theirs."""
    is_kept = b.op("Greater", kept, b.const(0.0))
    flag = b.op("Cast", is_kept, to=7)  # (N, k) 1 where kept
    ahead = b.op("CumSum", flag, b.const(1, np.int64), exclusive=1)  # kept ones before each
    total = b.op("ReduceSum", flag, b.const([1], np.int64), keepdims=1)  # (N, 1)
    others = b.op("Add", total, b.op("CumSum", b.op("Sub", b.const(1, np.int64), flag), b.const(1, np.int64),
                                     exclusive=1))
    place = b.op("Where", is_kept, ahead, others)
    return b.op("Slice", _permutation(b, place, k), b.const([0], np.int64), b.const([keep], np.int64),
                b.const([1], np.int64))


def build_tail(b: _Builder, probabilities: str, offsets: str, anchors: np.ndarray, classes: int,
               rules: DecodeRules, ties_in_order: bool = True) -> tuple[str, str, str]:
    """The tail's nodes in `b`; returns the names of ids, scores and boxes. `ties_in_order`: the runtime's TopK
    puts equal values in index order, as ONNX specifies (ONNX Runtime); OpenVINO's converted TopK does not
    (its stable mode is slow: a third of a millisecond per 400 values), so for it the order is counted."""
    count = anchors.shape[0]
    k = min(rules.topk, classes * count)
    keep = min(rules.keep, k)
    boxes = _decode_boxes(b, offsets, anchors, rules)
    flat = b.op("Reshape", _class_scores(b, probabilities, classes, rules), b.const([0, -1], np.int64))  # (N, C*A)
    best, index = b.op("TopK", flat, b.const([k], np.int64), outputs=2, axis=1, largest=1, sorted=1)  # (N, k)
    if not ties_in_order:  # equal scores put in index order (NumPy's stable sort) by counting, not sorting
        order = _score_then_index_order(b, best, index, k)
        best, index = b.op("GatherElements", best, order, axis=1), b.op("GatherElements", index, order, axis=1)
    anchor = b.op("Mod", index, b.const(count, np.int64))
    class_id = b.op("Div", index, b.const(count, np.int64))
    four = b.op("Expand", b.op("Unsqueeze", anchor, b.const([2], np.int64)), b.const([1, 1, 4], np.int64))
    candidates = b.op("GatherElements", boxes, four, axis=1)  # (N, k, 4)
    if rules.force_suppress:
        rows = b.op("Unsqueeze", best, b.const([1], np.int64))  # (N, 1, k): one class for all
    else:  # (N, C, k): each candidate scored in its own class's row only
        own = b.op("Equal", b.op("Unsqueeze", class_id, b.const([1], np.int64)),
                   b.const(np.arange(classes)[None, :, None], np.int64))
        rows = b.op("Where", own, b.op("Unsqueeze", best, b.const([1], np.int64)), b.const(0.0))
    selected = b.op("NonMaxSuppression", candidates, rows, b.const([k], np.int64), b.const([rules.overlap_thresh]),
                    b.const([rules.valid_thresh]), center_point_box=0)  # (M, 3): batch, class row, candidate
    where = b.op("Gather", selected, b.const([0, 2], np.int64), axis=1)  # (M, 2): batch, candidate
    kept = b.op("ScatterND", b.op("Mul", best, b.const(0.0)), where, b.op("GatherND", best, where))  # (N, k)
    # the kept candidates first, in their order (already by score, then index), then the rest
    rank = _kept_first(b, kept, k, keep)
    score = b.op("GatherElements", kept, rank, axis=1)
    found = b.op("Greater", score, b.const(0.0))
    minus = b.const(-1.0)
    ids = b.op("Where", found, b.op("Cast", b.op("GatherElements", class_id, rank, axis=1), to=1), minus)
    scores = b.op("Where", found, score, minus)
    rank4 = b.op("Expand", b.op("Unsqueeze", rank, b.const([2], np.int64)), b.const([1, 1, 4], np.int64))
    corners = b.op("Where", b.op("Unsqueeze", found, b.const([2], np.int64)),
                   b.op("GatherElements", candidates, rank4, axis=1), minus)
    pad = rules.keep - keep  # fewer candidates than `keep`: the rest is padding, as MXNet pads
    outputs = []
    for value, width in ((ids, 1), (scores, 1), (corners, 4)):
        if width == 1:
            value = b.op("Unsqueeze", value, b.const([2], np.int64))
        if pad:
            value = b.op("Pad", value, b.const([0, 0, 0, 0, pad, 0], np.int64), minus)
        outputs.append(value)
    return tuple(outputs)


def append_tail(path: Path, anchors: np.ndarray, rules: DecodeRules, classes: int, ties_in_order: bool = True) -> None:
    """Rewrite the ONNX heads at `path` (a detector of `classes` foreground classes) to end in the detection
    tail (outputs ids, scores, boxes); `ties_in_order` as for `build_tail` (False for OpenVINO)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    graph = model.graph
    if tuple(o.name for o in graph.output) == OUTPUTS:
        return
    probabilities, offsets = (o.name for o in graph.output)
    b = _Builder()
    ids, scores, boxes = build_tail(b, probabilities, offsets, np.asarray(anchors, np.float32), classes, rules,
                                    ties_in_order)
    for name, final in zip((ids, scores, boxes), OUTPUTS):
        b.nodes.append(helper.make_node("Identity", [name], [final], name=f"tail_{final}"))
    graph.node.extend(b.nodes)
    graph.initializer.extend(b.constants)
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch", rules.keep, width])
                         for name, width in zip(OUTPUTS, (1, 1, 4))])
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version < OPSET:
            opset.version = OPSET
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
