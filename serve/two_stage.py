"""A two-stage model at work: the detector finds the cards, the classifier names each one.

Per image: the detector's boxes (every class it answers, any score), class-agnostic NMS (a card is one
box whatever class the detector guessed), the best `max_boxes` scoring at least `box_threshold`; each box's
square crop cut from the full-resolution image by the rule `pack --crops` cut the classifier's training
images by (data/crops.py); all of an image's crops through the classifier in one call; each box answers
its `classes_per_box` best classes, score = box score x class probability. The result is a detector's
(serve/predictor.Detection rows over the classifier's classes), so every client of a detector works as is.
"""
from __future__ import annotations

import numpy as np

from magiccards.data.crops import crop_normalised
from magiccards.model_dir import TwoStageDir

from .detection_decode import DecodeRules, nms_one
from .predictor import Detection, Predictor


class TwoStagePredictor:
    """A loaded two-stage model; `predict(images)` answers as a detector's Predictor does."""

    task = "detection"  # the format it answers in; `model.task` is "two-stage"

    def __init__(self, model: TwoStageDir, backend: str | None = None, threads: int | None = None):
        self.model, self.classes = model, list(model.classes)
        self.close = lambda: None  # `load` sets it when it unpacked an archive for this model
        self.detector = Predictor(model.detector, backend=backend, threads=threads)
        self.classifier = Predictor(model.classifier, backend=backend, threads=threads)
        self.backend = self.detector.backend
        self._nms = DecodeRules(overlap_thresh=model.nms_iou, valid_thresh=model.box_threshold, force_suppress=True,
                                topk=400, keep=model.max_boxes)

    def __enter__(self) -> TwoStagePredictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> str:
        return (f"two-stage model from {self.model.path} ({len(self.classes)} classes, up to "
                f"{self.model.max_boxes} boxes an image, {self.model.classes_per_box} classes a box): detector "
                f"{self.detector.describe()}; classifier {self.classifier.describe()}")

    def boxes(self, image: np.ndarray) -> list[tuple[float, tuple[float, float, float, float]]]:
        """(box score, normalised box) of the cards the detector finds in `image`, best first, after
        class-agnostic NMS."""
        found = self.detector.predict([image], score_threshold=0.0, top_k=None)[0]
        if not found:
            return []
        ids = np.zeros(len(found), np.float32)
        scores = np.array([d.score for d in found], np.float32)
        corners = np.array([d.box for d in found], np.float32)
        rows = nms_one(ids, scores, corners, self._nms)
        return [(float(r[1]), tuple(float(v) for v in r[2:])) for r in rows if r[0] >= 0]

    def predict(self, images: list[np.ndarray], score_threshold: float = 0.0,
                top_k: int | None = None) -> list[list[Detection]]:
        """Detections for HWC uint8 RGB `images`, in order, scoring at least `score_threshold`, at most
        `top_k` of them an image (best first)."""
        return [self._one(image, score_threshold, top_k) for image in images]

    def _one(self, image: np.ndarray, score_threshold: float, top_k: int | None) -> list[Detection]:
        kept, crops = [], []
        for score, box in self.boxes(image):
            if score < score_threshold:  # box score x probability <= box score: nothing of it could be kept
                break
            crop = crop_normalised(image, box)
            if crop is not None:
                kept.append((score, box))
                crops.append(crop)
        if not crops:
            return []
        named = self.classifier.predict(crops)  # all of the image's crops in one call (batches of MAX_BATCH)
        found = []
        for (box_score, box), result in zip(kept, named):
            probabilities = np.asarray(result.probabilities)
            for class_id in np.argsort(-probabilities, kind="stable")[:self.model.classes_per_box]:
                score = box_score * float(probabilities[class_id])
                if score >= score_threshold:
                    found.append(Detection(int(class_id), score, box, self.classes[int(class_id)]))
        found.sort(key=lambda d: -d.score)
        return found[:top_k] if top_k is not None else found

