"""The real images an export is checked and calibrated on: the model's own validation records.

A model directory written by `magiccards train` sits in its job folder beside the job's channels
(`<job>/model`, `<job>/input/data/validation/*.rec`), so its validation records are found there; a
model from elsewhere (an unpacked model.tar.gz from S3) needs `--validation REC` (or `--calibration`).
Never random data: calibration and parity on noise say nothing about a model.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from magiccards.data.labels import parse_detection_label
from magiccards.data.recordio_reader import read_records, unpack_image_record
from magiccards.serve.images import ImageError, decode_image

from magiccards.errors import DataError
from magiccards.model_dir import ModelDir

from .graph import ExportError

JOB_VALIDATION = ("input", "data", "validation")


@dataclasses.dataclass
class Sample:
    image: np.ndarray  # HWC uint8 RGB, as decoded for serving
    label: float | None = None  # classification: the class index
    objects: np.ndarray | None = None  # detection: (K, 5) rows cls, xmin, ymin, xmax, ymax in [0, 1]


def find_records(model: ModelDir, given: Path | None, purpose: str) -> Path:
    """The .rec to use: `given`, else the validation channel of the job the model came from."""
    if given is not None:
        given = Path(given)
        if given.is_dir():
            recs = sorted(given.glob("*.rec"))
            if not recs:
                raise ExportError(f"{given} holds no .rec file for {purpose}")
            return recs[0]
        if not given.is_file():
            raise ExportError(f"{given} does not exist (a .rec of validation images is needed for {purpose})")
        return given
    found = job_validation_records(model)
    if found is None:
        channel = model.path.parent.joinpath(*JOB_VALIDATION)
        raise ExportError(f"{purpose} needs real validation images and none were found beside {model.path} "
                          f"(no {channel}/*.rec): pass the .rec the model was validated on, e.g. "
                          "--validation my-cards-rec/validation.rec")
    return found


def job_validation_records(model: ModelDir) -> Path | None:
    """The first .rec of the validation channel of the job the model directory sits in, if it does."""
    channel = model.path.parent.joinpath(*JOB_VALIDATION)
    recs = sorted(channel.glob("*.rec")) if channel.is_dir() else []
    return recs[0] if recs else None


def read_samples(rec: Path, task: str, limit: int) -> list[Sample]:
    """Up to `limit` decodable samples of `rec` (evenly spread over the file when it holds more)."""
    try:
        records = list(read_records(rec))
    except DataError as e:
        raise ExportError(str(e)) from None
    if not records:
        raise ExportError(f"{rec} holds no records")
    picks = np.unique(np.linspace(0, len(records) - 1, min(limit, len(records))).round().astype(int))
    samples = []
    for i in picks:
        try:
            header, data = unpack_image_record(records[i])
            image = decode_image(data)
        except (DataError, ImageError):
            continue
        label = np.asarray(header.label, np.float32).ravel()
        if task == "classification":
            samples.append(Sample(image, label=float(label[0])))
        else:
            try:
                _, objects = parse_detection_label(label)
            except DataError as e:
                raise ExportError(f"{rec} is not a detection dataset ({e})") from None
            samples.append(Sample(image, objects=objects[:, :5]))
    if not samples:
        raise ExportError(f"no image of {rec} could be decoded")
    return samples
