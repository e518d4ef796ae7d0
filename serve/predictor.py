"""One predictor for every place a model runs: the server, `magiccards predict`, the parity checks.

Load once (the model directory through the model-directory contract, a backend), then images in,
results out, as the inference toolkit splits it: input (serve/images.py), predict (a backend), output
(classification probabilities; detection boxes normalised to the original image, with class, score
and name). Nothing here imports the training code: the model directory is the only contract.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from magiccards.errors import ModelDirError
from magiccards.model_dir import CLASSES, HYPERPARAMETERS, ModelDir, open_model_dir

from . import backends
from .preprocess import network_input

MAX_BATCH = 16  # images per run of the backend; larger requests run in several batches


@dataclasses.dataclass
class Classification:
    probabilities: list[float]
    classes: list[str]

    @property
    def predicted_label(self) -> int:
        return int(np.argmax(self.probabilities))

    def top(self, k: int) -> list[tuple[str, float]]:
        order = np.argsort(self.probabilities)[::-1][:k]
        return [(self.classes[i], float(self.probabilities[i])) for i in order]


@dataclasses.dataclass
class Detection:
    class_id: int
    score: float
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in [0, 1] of the original image
    name: str

    def as_row(self) -> list[float]:
        """The built-in algorithm's row: [class, score, xmin, ymin, xmax, ymax]."""
        return [float(self.class_id), self.score, *self.box]


class Predictor:
    """A loaded model: `predict(images)` turns RGB images into Classification or Detection results."""

    def __init__(self, model: ModelDir | Path | str, backend: str | None = None, threads: int | None = None,
                 workdir: Path | None = None):
        if not isinstance(model, ModelDir) and workdir is None:
            # a model.tar.gz is unpacked into a folder of our own, removed by close(), `with`, or at exit
            scratch = Path(tempfile.mkdtemp(prefix="magiccards-model-"))
            self.close = weakref.finalize(self, shutil.rmtree, scratch, True)
            workdir = scratch / "model"
        else:
            self.close = lambda: None
        try:
            self._load(model, backend, threads, workdir)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _load(self, model, backend, threads, workdir) -> None:
        self.model = model if isinstance(model, ModelDir) else open_model_dir(Path(model), workdir)
        self.task, self.classes = self.model.task, list(self.model.classes)
        self.backend = backends.select(self.model, backend, threads)
        self._resize = _resize_hyperparameter(self.model)
        warm = self.predict([np.zeros((self.model.input_shape[1], self.model.input_shape[2], 3), np.uint8)])
        if self.task == "classification" and len(warm[0].probabilities) != len(self.classes):
            raise ModelDirError(f"{self.model.path / CLASSES} names {len(self.classes)} classes, but the network "
                                f"answers {len(warm[0].probabilities)}: the files come from different models")

    def describe(self) -> str:
        c, h, w = self.model.input_shape
        return (f"{self.task} model {self.model.network or '(network unknown)'} ({len(self.classes)} classes, "
                f"input {c}x{h}x{w}) from {self.model.path}, backend {self.backend.name} {self.backend.precision}"
                + (f" (running {self.backend.ran_at})" if self.backend.ran_at != self.backend.precision else ""))

    def predict(self, images: list[np.ndarray], score_threshold: float = 0.0,
                top_k: int | None = None) -> list[Classification] | list[list[Detection]]:
        """Results for HWC uint8 RGB `images`, in order. Detection keeps boxes scoring at least
        `score_threshold`, at most `top_k` of them (best first); classification ignores both."""
        results = []
        for start in range(0, len(images), MAX_BATCH):
            chunk = images[start:start + MAX_BATCH]
            batch = np.stack([network_input(image, self.task, self.model.input_shape, self.model.mean,
                                            self.model.std, self._resize) for image in chunk])
            outputs = self.backend.run(batch)
            if self.task == "classification":
                results += [Classification(_softmax(scores).tolist(), self.classes) for scores in outputs[0]]
            else:
                results += [self._detections(outputs, i, score_threshold, top_k) for i in range(len(chunk))]
        return results

    def _detections(self, outputs, i: int, score_threshold: float, top_k: int | None) -> list[Detection]:
        ids, scores, boxes = (np.asarray(o[i]) for o in outputs[:3])
        _, height, width = self.model.input_shape
        found = []
        for class_id, score, box in zip(ids.ravel(), scores.ravel(), boxes.reshape(-1, 4)):
            if class_id < 0 or score < score_threshold or not np.isfinite(score):
                continue
            x0, y0, x1, y1 = np.clip(box / [width, height, width, height], 0.0, 1.0).tolist()
            if x1 <= x0 or y1 <= y0:
                continue
            found.append(Detection(int(class_id), float(score), (x0, y0, x1, y1), self.classes[int(class_id)]))
        found.sort(key=lambda d: -d.score)
        return found[:top_k] if top_k is not None else found


def _softmax(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max())
    return exp / exp.sum()


def _resize_hyperparameter(model: ModelDir) -> int | None:
    """The built-in `resize` hyperparameter of the job (a shorter-side resize before the crop), if set."""
    try:
        value = json.loads((model.path / HYPERPARAMETERS).read_text()).get("resize")
        return int(value) if value not in (None, "", "0", 0) else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None

