"""Shared steps of the annotation readers: class indexing, box cleaning, orphan detection."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from magiccards.errors import DataError

from ..samples import (
    IMAGE_SUFFIXES,
    Box,
    Problems,
    Sample,
    clean_class_name,
    is_image_file,
)


@dataclasses.dataclass
class RawObject:
    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    class_id: float | None = None  # the annotation's own class number (COCO, SageMaker): it orders the classes


def class_number(value) -> float | None:
    """An annotation's class id as a number, or None when it is not one."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def image_size(width, height, item: str, problems: Problems) -> tuple[int, int] | None:
    """(width, height) an annotation states, when both are finite positive numbers; otherwise None and,
    when something was stated, a reported problem (the image's own size is used instead)."""
    if width in (None, "") and height in (None, ""):
        return None
    try:
        w, h = float(width), float(height)
        if not (_finite(w) and _finite(h) and w >= 1 and h >= 1):
            raise ValueError
    except (TypeError, ValueError):
        problems.add("invalid image size", item, f"width {width!r} / height {height!r} are not positive numbers; "
                     "the image's own size is used")
        return None
    return int(w), int(h)


def ordered_classes(named: Iterable[tuple[str, float | None]]) -> list[str]:
    """The distinct names of (name, class id) pairs, ordered by their smallest id, then by name."""
    ids: dict[str, float] = {}
    for name, number in named:
        ids[name] = min(ids.get(name, float("inf")), float("inf") if number is None else number)
    return sorted(ids, key=lambda name: (ids[name], name))


def find_image(images: Path, name: str, stem: str | None = None) -> Path:
    """The image an annotation names, in the folder `images`: `images/name`, else `images/<base name>`
    (annotations often carry the annotator's own folders); with `stem` (VOC names images by the XML's
    stem too), any image suffix after the name's stem or `stem`. When none exists, `images/name`."""
    for candidate in ([images / name, images / Path(name).name] if name else []):
        if candidate.is_file():
            return candidate.resolve()
    if stem is not None:
        for base in filter(None, (Path(name).stem if name else None, stem)):
            for suffix in IMAGE_SUFFIXES:
                for candidate in (images / f"{base}{suffix}", images / f"{base}{suffix.upper()}"):
                    if candidate.is_file():
                        return candidate.resolve()
    for candidate in ([images / name, images / Path(name).name] if name else []):
        if candidate.is_symlink():  # a broken link: kept as the link, so that the report says so
            return candidate.parent.resolve() / candidate.name
    return (images / (name or (f"{stem}.jpg" if stem else ""))).resolve()


@dataclasses.dataclass
class RawImage:
    """An annotated image before class names become indices."""

    path: Path
    size: tuple[int, int] | None
    objects: list[RawObject]
    source: str  # the annotation file (and entry) it came from, for messages


def clean_boxes(boxes: list[Box], width: int, height: int, item: str, problems: Problems) -> list[Box]:
    """Clip boxes to the image; drop (and report) those outside it, of zero area, or repeated."""
    kept: list[Box] = []
    seen = set()
    for b in boxes:
        coords = f"({b.xmin:g},{b.ymin:g},{b.xmax:g},{b.ymax:g})"
        if not all(map(_finite, (b.xmin, b.ymin, b.xmax, b.ymax))):
            problems.add("invalid box", item, f"box {coords} has a non-numeric coordinate")
            continue
        if b.xmax <= b.xmin or b.ymax <= b.ymin:
            problems.add("zero-area box", item, f"box {coords} has zero or negative area")
            continue
        if b.xmax <= 0 or b.ymax <= 0 or b.xmin >= width or b.ymin >= height:
            problems.add("box outside image", item, f"box {coords} lies outside the {width}x{height} image")
            continue
        clipped = Box(b.cls, max(0.0, b.xmin), max(0.0, b.ymin), min(float(width), b.xmax), min(float(height), b.ymax))
        if clipped != b:
            problems.add("box clipped", item, f"box {coords} extends past the {width}x{height} image; clipped")
        key = (clipped.cls, round(clipped.xmin, 3), round(clipped.ymin, 3), round(clipped.xmax, 3), round(clipped.ymax, 3))
        if key in seen:
            problems.add("duplicate box", item, f"box {coords} appears twice; kept once")
            continue
        seen.add(key)
        kept.append(clipped)
    return kept


def _finite(v: float) -> bool:
    return v == v and v not in (float("inf"), float("-inf"))


def cleaned_name(name: str, item: str | Path, problems: Problems, reported: set) -> str:
    """`name` as classes.txt can hold it (see samples.clean_class_name); a name that had to change is
    reported once."""
    clean = clean_class_name(name)
    if clean and clean != str(name).strip() and name not in reported:
        reported.add(name)
        problems.add("class name changed", item, f"class name {name!r} holds a line break or tab; "
                     f"each run of them is replaced by a space: {clean!r}")
    return clean


def clean_object_names(raw: list[RawImage], problems: Problems) -> None:
    """Every object's class name cleaned where it enters; objects without a name are dropped and counted."""
    reported: set = set()
    for r in raw:
        kept = []
        for o in r.objects:
            o.name = cleaned_name(o.name, r.source, problems, reported)
            if o.name:
                kept.append(o)
            else:
                problems.add("empty class name", r.source, "an object has no class name; object skipped")
        r.objects = kept


def index_classes(raw: list[RawImage], classes: list[str] | None, problems: Problems) -> tuple[list[Sample], list[str]]:
    """Turn raw annotations into detection samples.

    Class indices follow `classes` when given (objects of other classes are skipped and reported),
    else the names found, in the order of the annotation's own class ids where it has them (COCO
    category ids, SageMaker class_id), else sorted. Repeated images are merged once; images left
    without any usable object are skipped and reported.
    """
    clean_object_names(raw, problems)
    if classes is None:
        classes = ordered_classes((o.name, o.class_id) for r in raw for o in r.objects)
    index = {name: i for i, name in enumerate(classes)}
    samples: list[Sample] = []
    by_path: dict[Path, RawImage] = {}
    for r in raw:
        if r.path in by_path:
            problems.add("duplicate annotation", r.source,
                         f"{r.path.name} is already annotated by {by_path[r.path].source}; this one is ignored")
            continue
        by_path[r.path] = r
        if not r.path.is_file():
            problems.add("annotation without image", r.source, absent_image(r.path))
            continue
        boxes = []
        for o in r.objects:
            if o.name not in index:
                problems.add("unknown class", r.source, f"class {o.name!r} is not one of {classes}; object skipped")
                continue
            boxes.append(Box(index[o.name], o.xmin, o.ymin, o.xmax, o.ymax))
        if r.size is not None:
            boxes = clean_boxes(boxes, r.size[0], r.size[1], r.source, problems)
        if not boxes:
            problems.add("no objects", r.source, "no usable object is left in this image; image skipped", images=1)
            continue
        samples.append(Sample(path=r.path, rel="", boxes=boxes, size=r.size))
    return samples, classes


def report_orphans(image_dir: Path, annotated: set[Path], problems: Problems) -> None:
    """Report image files in `image_dir` that no annotation mentions."""
    if not image_dir.is_dir():
        return
    for p in sorted(image_dir.rglob("*")):
        if is_image_file(p) and p.resolve() not in annotated and not is_broken_link(p, problems):
            problems.add("image without annotation", p, "no annotation mentions this image; skipped", images=1)


def set_relative_paths(samples: list[Sample], root: Path) -> None:
    """Fill `rel` with the path relative to `root` (as .lst files store it), else the absolute path."""
    for s in samples:
        try:
            s.rel = s.path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            s.rel = s.path.resolve().as_posix()


def absent_image(path: Path) -> str:
    """Why the image file `path` cannot be used: a broken link (naming its target) or no such file."""
    if path.is_symlink() and not path.exists():
        return f"image file {path} is a broken link (to {os.readlink(path)})"
    return f"image file {path} does not exist"


def is_broken_link(path: Path, problems: Problems) -> bool:
    """True, and reported, when `path` is a symbolic link whose target is gone."""
    if path.is_symlink() and not path.exists():
        problems.add("broken link", path, f"a link to {os.readlink(path)}, which does not exist; skipped", images=1)
        return True
    return False


def require_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{what} {path} does not exist")
    return path
