"""The label layout of MXNet image records, as im2rec and SageMaker's built-in algorithms use it.

Classification: one float, the class index (`IRHeader.flag == 0`).
Detection (`im2rec --pack-label`): `[A, B, width, height, cls, xmin, ymin, xmax, ymax, cls, ...]`
with header width A = 4, object width B = 5, classes from 0 and corners normalised to [0, 1].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from magiccards.errors import DataError

DETECTION_HEADER_WIDTH = 4
OBJECT_WIDTH = 5


def detection_label(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Flat float32 label for boxes given as rows (cls, xmin, ymin, xmax, ymax), normalised."""
    header = np.array([DETECTION_HEADER_WIDTH, OBJECT_WIDTH, width, height], dtype=np.float32)
    return np.concatenate([header, np.asarray(boxes, dtype=np.float32).reshape(-1)])


def parse_detection_label(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a flat detection label into its header and an (N, object_width) array of objects.

    Raises DataError when the label is not a packed detection label.
    """
    label = np.asarray(label, dtype=np.float32).ravel()
    if label.size < 2:
        raise DataError(f"label of {label.size} value(s) is not a detection label; was the file packed for classification?")
    header_width, object_width = int(label[0]), int(label[1])
    if header_width < 2 or object_width < 5 or (label.size - header_width) % object_width:
        raise DataError(
            f"label header width {header_width} / object width {object_width} do not fit a label of {label.size} values; "
            "expected [4, 5, width, height, cls, xmin, ymin, xmax, ymax, ...] (im2rec --pack-label)")
    return label[:header_width], label[header_width:].reshape(-1, object_width)


def task_of_label(flag: int, label: np.ndarray) -> str:
    """The task a record's label belongs to (flag and label as in the record's IRHeader)."""
    label = np.asarray(label, dtype=np.float32).ravel()
    if flag == 0 or label.size == 1:
        return "classification"
    parse_detection_label(label)
    return "detection"


def task_of_rec(rec: Path) -> str | None:
    """The task of a .rec file's first record; None when the file is missing or holds no record."""
    from .recordio_reader import read_records, unpack_image_record
    if not Path(rec).is_file():
        return None
    for record in read_records(rec):
        header, _ = unpack_image_record(record)
        return task_of_label(header.flag, header.label)
    return None


def lst_line(index: int, label: np.ndarray | float, path: str) -> str:
    """One row of an im2rec .lst file: index, label value(s), relative path, tab-separated."""
    values = np.atleast_1d(np.asarray(label, dtype=np.float64))
    return "\t".join([str(index), *(f"{v:f}" for v in values), path]) + "\n"
