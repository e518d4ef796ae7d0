"""SSD box decoding and per-class NMS in NumPy: the end of the detection graph, for every edge runtime.

A detection export (`magiccards export`) holds the network up to its class probabilities (N, A, C+1,
background first) and box offsets (N, A, 4); the anchors and the rules of the graph's own tail are
stored beside it (exports/decode.json, exports/anchors.npy). This module replays that tail exactly as
MXNet's ops do it, so an ONNX Runtime or OpenVINO export answers as the model directory's own graph:

- `_contrib_box_decode` (format center): anchor (cx, cy, w, h); centre + offset * std * size,
  size * exp(offset * std), clipped in log space when `clip` > 0;
- GluonCV's MultiPerClassDecoder: one candidate per anchor and foreground class whose probability is
  above its threshold (with `best_class_only`, MXNet's MultiBoxDetection rule, which a DeepLens graph
  ends in: one candidate per anchor, its best foreground class);
- `_contrib_box_nms` (per class unless force_suppress): candidates above `valid_thresh`, best first,
  the best `topk` kept, greedy suppression at IoU > `overlap_thresh`; then the first `keep` rows,
  padded with -1 as MXNet pads them.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True)
class DecodeRules:
    """The parameters of the detection graph's tail, as read from the MXNet symbol by the exporter."""

    std: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
    clip: float = -1.0
    class_thresh: float = 0.01
    overlap_thresh: float = 0.45
    valid_thresh: float = 0.01
    topk: int = 400
    keep: int = 100
    force_suppress: bool = False
    best_class_only: bool = False

    def as_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, value: dict) -> DecodeRules:
        fields = {f.name for f in dataclasses.fields(cls)}
        rules = {k: v for k, v in value.items() if k in fields}
        if "std" in rules:
            rules["std"] = tuple(float(v) for v in rules["std"])
        return cls(**rules)


def load_rules(path: Path) -> DecodeRules:
    return DecodeRules.from_json(json.loads(Path(path).read_text()))


def decode_boxes(offsets: np.ndarray, anchors: np.ndarray, rules: DecodeRules) -> np.ndarray:
    """Corner boxes (..., A, 4) from box offsets (..., A, 4) and centre-format anchors (A, 4)."""
    std = np.asarray(rules.std, np.float32)
    ax, ay, aw, ah = (anchors[..., i] for i in range(4))
    ox = offsets[..., 0] * std[0] * aw + ax
    oy = offsets[..., 1] * std[1] * ah + ay
    tw, th = offsets[..., 2] * std[2], offsets[..., 3] * std[3]
    if rules.clip > 0:
        tw, th = np.minimum(tw, rules.clip), np.minimum(th, rules.clip)
    with np.errstate(over="ignore"):  # an untrained head can overflow exp, as it does in MXNet: inf boxes
        half_w, half_h = np.exp(tw) * aw / 2, np.exp(th) * ah / 2
    return np.stack([ox - half_w, oy - half_h, ox + half_w, oy + half_h], axis=-1)


def _suppression(ids: np.ndarray, boxes: np.ndarray, rules: DecodeRules) -> np.ndarray:
    """(n, n) booleans: row i suppresses column j when their IoU exceeds the threshold (same class unless
    force_suppress). All pairs at once: at most `topk` candidates, so at most topk^2 values."""
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = np.maximum(0.0, x1 - x0) * np.maximum(0.0, y1 - y0)
    width = np.maximum(0.0, np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None]))
    height = np.maximum(0.0, np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None]))
    inter = width * height
    union = area[:, None] + area[None] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        suppress = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0) > rules.overlap_thresh
    if not rules.force_suppress:
        suppress &= ids[:, None] == ids[None]
    return suppress


def _greedy(suppress: np.ndarray) -> list[int]:
    """Indices kept by greedy suppression over candidates sorted best first."""
    alive = np.ones(len(suppress), bool)
    kept = []
    for i in range(len(suppress)):
        if alive[i]:
            kept.append(i)
            alive &= ~suppress[i]  # only later candidates matter: earlier ones are decided
    return kept


def nms_one(ids: np.ndarray, scores: np.ndarray, boxes: np.ndarray, rules: DecodeRules) -> np.ndarray:
    """Rows [id, score, xmin, ymin, xmax, ymax] kept by box_nms, best first, padded with -1 to `keep`.

    Per class (force_suppress off), classes never suppress each other, so each class is suppressed on its
    own (smaller IoU matrices) and the survivors merged back in score order: the same rows as one pass."""
    valid = np.flatnonzero((scores > rules.valid_thresh) & (ids >= 0))
    order = valid[np.argsort(-scores[valid], kind="stable")][:rules.topk]
    ids, scores, boxes = ids[order], scores[order], boxes[order].astype(np.float32)
    if rules.force_suppress:
        kept = _greedy(_suppression(ids, boxes, rules))
    else:
        kept = []
        for class_id in np.unique(ids):
            members = np.flatnonzero(ids == class_id)
            kept += members[_greedy(_suppression(ids[members], boxes[members], rules))].tolist()
        kept.sort()  # positions in the score order
    kept = kept[:rules.keep]
    out = np.full((rules.keep, 6), -1.0, np.float32)
    if kept:
        out[:len(kept), 0], out[:len(kept), 1], out[:len(kept), 2:] = ids[kept], scores[kept], boxes[kept]
    return out


def decode(probabilities: np.ndarray, offsets: np.ndarray, anchors: np.ndarray,
           rules: DecodeRules) -> list[np.ndarray]:
    """The detection graph's outputs [ids (N, keep, 1), scores (N, keep, 1), boxes (N, keep, 4)] from the
    heads' class probabilities (N, A, C+1) and box offsets (N, A, 4)."""
    boxes = decode_boxes(offsets, anchors, rules)
    foreground = probabilities.shape[-1] - 1
    rows = []
    for probs, corners in zip(probabilities, boxes):
        if rules.best_class_only:  # every foreground class but the anchor's best (the first of ties) scores nothing
            best = np.zeros_like(probs, dtype=bool)
            best[np.arange(len(probs)), 1 + probs[:, 1:].argmax(axis=1)] = True
            probs = np.where(best, probs, 0.0)
        scores = probs[:, 1:].T.reshape(-1)  # class-major, as the graph concatenates the classes
        ids = np.repeat(np.arange(foreground, dtype=np.float32), probs.shape[0])
        ids = np.where(scores > rules.class_thresh, ids, -1.0)
        scores = np.where(scores > rules.class_thresh, scores, 0.0)
        rows.append(nms_one(ids, scores, np.tile(corners, (foreground, 1)), rules))
    rows = np.stack(rows) if rows else np.zeros((0, rules.keep, 6), np.float32)
    return [rows[..., 0:1], rows[..., 1:2], rows[..., 2:6]]
