"""Read any supported dataset layout into samples, class names and a list of problems."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import DataError
from .formats import class_folders, coco, csv_boxes, ground_truth, sagemaker_json, voc
from .formats.common import index_classes, report_orphans, set_relative_paths
from .samples import Problems, Sample, is_image_file, read_classes

FORMATS = ("auto", "folders", "voc", "coco", "sagemaker", "manifest", "csv")
FILE_FORMATS = {"coco": "a COCO .json file", "manifest": "a Ground Truth .manifest file", "csv": "a .csv file of boxes"}


@dataclasses.dataclass
class Dataset:
    samples: list[Sample]
    classes: list[str]
    task: str  # "classification" | "detection"
    root: Path
    problems: Problems


def detect_format(path: Path) -> str:
    """Guess the layout of `path`; raises DataError naming the layouts it knows."""
    if ground_truth.looks_like(path):
        return "manifest"
    if coco.looks_like(path):
        return "coco"
    if csv_boxes.looks_like(path):
        return "csv"
    if voc.looks_like(path):
        return "voc"
    if sagemaker_json.looks_like(path):
        return "sagemaker"
    if class_folders.looks_like(path):
        return "folders"
    loose = sum(1 for p in path.iterdir() if is_image_file(p)) if path.is_dir() else 0
    if loose:
        raise DataError(f"{path} holds {loose} image(s) but no class folders or annotations: put each class's images "
                        f"in {path}/<class name>/ (classification), or add Pascal VOC, COCO, SageMaker JSON, Ground Truth "
                        "or CSV annotations (detection)")
    raise DataError(
        f"cannot tell the dataset layout of {path}: expected class folders (DIR/<class>/*.jpg), "
        "Pascal VOC (DIR/annotations/*.xml), a COCO .json file, SageMaker JSON (DIR/annotations/*.json), "
        "a SageMaker Ground Truth .manifest or a .csv of boxes; name one with --format")


def load(path: Path, fmt: str = "auto", images: Path | None = None,
         classes: list[str] | Path | None = None, exclude: Path | None = None) -> Dataset:
    """Load a dataset. `classes` (a list or a classes.txt) fixes class order; unknown classes are skipped.

    `exclude` is a folder never read as input (pack's output folder, when it lies inside the input).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"input {path} does not exist")
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if isinstance(classes, (str, Path)):
        classes = read_classes(Path(classes))
    if images is not None and not Path(images).is_dir():
        raise DataError(f"image folder {images} does not exist")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt in FILE_FORMATS and not path.is_file():
        raise DataError(f"--format {fmt} reads {FILE_FORMATS[fmt]}; {path} is a folder")
    if fmt not in FILE_FORMATS and not path.is_dir():
        raise DataError(f"--format {fmt} reads a folder; {path} is a file")
    problems = Problems()
    if fmt == "folders":
        samples, classes = class_folders.read(path, classes, problems, exclude)
        root, task = path, "classification"
    elif fmt == "manifest" and ground_truth.task_of(path) == "classification":
        samples, classes = ground_truth.read_labels(path, images, classes, problems)
        root, task = path.parent, "classification"
    else:
        reader = {"voc": voc, "coco": coco, "sagemaker": sagemaker_json, "manifest": ground_truth, "csv": csv_boxes}[fmt]
        raw = reader.read(path, images, problems)
        samples, classes = index_classes(raw, classes, problems)
        image_root = Path(images) if images else reader.image_dir(path)
        report_orphans(image_root, {r.path for r in raw}, problems)
        root, task = (path if path.is_dir() else path.parent), "detection"
    if not samples:
        raise DataError(f"no usable image found in {path} (format {fmt}); "
                        + (f"{len(problems)} problem(s), first: {problems.items[0]}" if len(problems) else "it is empty"))
    if task == "classification" and len(classes) < 2:
        raise DataError(f"classification needs at least 2 classes with images; {path} has {classes}")
    set_relative_paths(samples, root)
    samples = _listable(samples, problems)
    if not samples:
        raise DataError(f"no usable image found in {path}: every file name holds a tab or line break")
    return Dataset(samples, classes, task, root, problems)


def _listable(samples: list[Sample], problems: Problems) -> list[Sample]:
    """Samples whose path can be a field of a tab-separated .lst row; the others are reported."""
    kept = []
    for s in samples:
        if any(c in s.rel for c in "\t\n\r"):
            problems.add("unusable file name", repr(s.rel)[1:-1],
                         "a tab or line break in the path cannot be stored in a .lst file; rename it; skipped", images=1)
        else:
            kept.append(s)
    return kept
