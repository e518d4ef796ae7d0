"""Does an export still give the model's answers? Measured on real validation images, against MXNet.

Both sides run through serve/'s Predictor (the same preprocessing, the same output code), so the only
difference measured is the runtime and its precision:

- classification: top-1 agreement with MXNet and the largest difference of any class probability;
- detection: VOC07 mAP of the export and of MXNet against the records' own boxes, and the difference.

Gates: FP32 exports agree 100 % on top-1 with probabilities within 1e-4, and differ by at most 0.5 mAP point;
FP16/BF16/INT8 exports agree on at least 99 % and differ by at most 1 point. The gates are two-sided: an
export scoring well above MXNet gives other answers than the model too (a mismatch, not a bonus).
"""
from __future__ import annotations

import numpy as np
from magiccards.serve.predictor import Predictor

from .validation import Sample

GATES = {"fp32": {"agreement": 100.0, "max_difference": 1e-4, "map_points": 0.5},
         "fp16": {"agreement": 99.0, "max_difference": None, "map_points": 1.0},
         "int8": {"agreement": 99.0, "max_difference": None, "map_points": 1.0}}


def map_of(results: list, samples: list[Sample], classes: int) -> float:
    """VOC07 mAP@0.5 of `results` (lists of Detection) against the samples' own boxes."""
    return map_per_class(results, samples, classes)[1]


def map_per_class(results: list, samples: list[Sample], classes: int) -> tuple[list[float], float]:
    """VOC07 AP@0.5 per class (0 for a class never seen) and their mean (mAP) of `results` (lists of Detection)
    against the samples' own boxes."""
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric

    metric = VOC07MApMetric(iou_thresh=0.5, class_names=[str(i) for i in range(classes)])
    for found, sample in zip(results, samples):
        # in pixels of the image: the VOC metric adds one pixel to xmax and ymax (Pascal's convention),
        # which on boxes normalised to [0, 1] would make every box overlap every other
        h, w = sample.image.shape[:2]
        scale = np.array([w, h, w, h], np.float32)
        boxes = (np.array([d.box for d in found], np.float32).reshape(-1, 4) * scale)[None]
        labels = np.array([d.class_id for d in found], np.float32).reshape(1, -1)
        scores = np.array([d.score for d in found], np.float32).reshape(1, -1)
        objects = sample.objects
        metric.update(boxes, labels, scores, (objects[:, 1:5] * scale)[None], objects[None, :, 0])
    values = [float(v) if np.isfinite(v) else 0.0 for v in metric.get()[1]]
    return values[:-1], values[-1]


def compare(reference: Predictor, export: Predictor, samples: list[Sample], precision: str) -> dict:
    """The parity record of `export` against `reference` (MXNet) on `samples`."""
    images = [s.image for s in samples]
    ref, got = reference.predict(images), export.predict(images)
    gate = GATES[precision]
    record = {"images": len(samples)}
    if reference.task == "classification":
        ref_p, got_p = np.array([r.probabilities for r in ref]), np.array([r.probabilities for r in got])
        finite = np.isfinite(got_p).all(axis=1)  # a half-precision overflow gives inf logits, NaN probabilities
        agreement = 100.0 * float(np.mean((ref_p.argmax(1) == got_p.argmax(1)) & finite))
        difference = float(np.abs(ref_p - got_p)[finite].max()) if finite.any() else None
        record.update(top1_agreement=round(agreement, 3), max_probability_difference=difference,
                      non_finite_outputs=int((~finite).sum()),
                      passed=bool(finite.all() and agreement >= gate["agreement"] and
                                  (gate["max_difference"] is None or difference <= gate["max_difference"])))
    else:
        ref_map, got_map = map_of(ref, samples, len(reference.classes)), map_of(got, samples, len(reference.classes))
        loss = 100.0 * (ref_map - got_map)
        record.update(map_mxnet=round(ref_map, 5), map_export=round(got_map, 5), map_points_lost=round(loss, 3),
                      passed=bool(abs(loss) <= gate["map_points"]))
    record["gate"] = {k: v for k, v in gate.items() if v is not None and
                      (k == "map_points") == (reference.task == "detection")}
    return record


def describe(record: dict) -> str:
    """One line of a parity record, as `magiccards export` prints it."""
    where = f"{record['format']} {record['precision']} (ran {record.get('ran_at', '?')})"
    verdict = "passed" if record["passed"] else "FAILED (kept; serving's auto backend will not pick it)"
    if "top1_agreement" in record:
        difference = record["max_probability_difference"]
        figures = (f"top-1 agreement {record['top1_agreement']:.2f} %, max probability difference "
                   + (f"{difference:.2e}" if difference is not None else "n/a"))
        if record.get("non_finite_outputs"):
            figures += f", {record['non_finite_outputs']} image(s) answered inf/NaN (half-precision overflow?)"
    else:
        figures = (f"mAP {record['map_export']:.4f} vs MXNet {record['map_mxnet']:.4f} "
                   f"({record['map_points_lost']:+.2f} points lost)")
    return f"parity of {where} on {record['images']} validation images: {figures}: {verdict}"
