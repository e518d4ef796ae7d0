"""Read any supported dataset layout into samples, class names and a list of problems."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from magiccards.errors import DataError

from .formats import CHOICES, FORMATS, class_folders, ground_truth
from .formats.common import index_classes, report_orphans, set_relative_paths
from .samples import Problems, Sample, check_class_names, is_image_file, read_classes


@dataclasses.dataclass
class Dataset:
    samples: list[Sample]
    classes: list[str]
    task: str  # "classification" | "detection"
    root: Path
    problems: Problems


def detect_format(path: Path) -> str:
    """Guess the layout of `path`; raises DataError naming the layouts it knows."""
    for name, fmt in FORMATS.items():
        if fmt.reader.looks_like(path):
            return name
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
    if fmt not in CHOICES:
        raise DataError(f"unknown format {fmt!r}; choose one of {', '.join(CHOICES)}")
    if isinstance(classes, (str, Path)):
        classes = read_classes(Path(classes))
    elif classes is not None:
        classes = check_class_names(classes, "--classes")
    if images is not None and not Path(images).is_dir():
        raise DataError(f"image folder {images} does not exist")
    fmt = detect_format(path) if fmt == "auto" else fmt
    reads_a_file = FORMATS[fmt].reads_a_file
    if reads_a_file and not path.is_file():
        raise DataError(f"--format {fmt} reads {FORMATS[fmt].reads}; {path} is a folder")
    if not reads_a_file and not path.is_dir():
        raise DataError(f"--format {fmt} reads a folder; {path} is a file")
    problems = Problems()
    if fmt == "folders":
        samples, classes = class_folders.read(path, classes, problems, exclude)
        root, task = path, "classification"
    elif fmt == "manifest" and ground_truth.task_of(path) == "classification":
        samples, classes = ground_truth.read_labels(path, images, classes, problems)
        root, task = path.parent, "classification"
    else:
        reader = FORMATS[fmt].reader
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


def as_crops(samples: list[Sample]) -> list[Sample]:
    """One classification sample per box of the detection `samples`: the square around the box (`Sample.crop`),
    labelled with its class. Split the photos first, so that no photo gives crops to both splits."""
    return [dataclasses.replace(s, rel=f"{s.rel}#{k}", label=b.cls, boxes=None, crop=b)
            for s in samples for k, b in enumerate(s.boxes or [])]


def as_one_class(dataset: Dataset, name: str) -> Dataset:
    """The detection `dataset` with every object of class `name` (a class-agnostic detector's data, e.g. "card")."""
    if dataset.task != "detection":
        raise DataError("--one-class applies to detection datasets (boxes), not to class folders")
    samples = [dataclasses.replace(s, boxes=[dataclasses.replace(b, cls=0) for b in s.boxes]) for s in dataset.samples]
    return dataclasses.replace(dataset, samples=samples, classes=[name])
