"""SageMaker Ground Truth output manifests: JSON lines, one image each, as a labelling job writes them.

A line holds `source-ref` (the image, usually an s3:// URI) and a label attribute named by the job
with a `<attribute>-metadata` beside it. Bounding-box jobs (`groundtruth/object-detection`) store
`{"image_size": [...], "annotations": [{"class_id", "left", "top", "width", "height"}]}` and name the
classes in the metadata's `class-map`; image-classification jobs store the class id and name it in
the metadata's `class-name`. Images are looked up in the image folder by their base name.
"""
from __future__ import annotations

import json
from pathlib import Path

from magiccards.errors import DataError

from ..samples import Problems, Sample
from .common import (
    RawImage,
    RawObject,
    absent_image,
    class_number,
    cleaned_name,
    find_image,
    ordered_classes,
    report_orphans,
)

DETECTION, CLASSIFICATION = "groundtruth/object-detection", "groundtruth/image-classification"
SUFFIXES = (".manifest", ".jsonl")


def looks_like(path: Path) -> bool:
    if not (path.is_file() and path.suffix.lower() in SUFFIXES + (".json",)):
        return False
    try:
        with open(path, encoding="utf-8", errors="ignore") as f:
            first = next((line for line in f if line.strip()), "")
        line = json.loads(first)
    except (OSError, ValueError):
        return False
    return isinstance(line, dict) and "source-ref" in line


def image_dir(path: Path) -> Path:
    return path.parent / "images" if (path.parent / "images").is_dir() else path.parent


def task_of(path: Path) -> str:
    """'detection' or 'classification', from the label type of the first labelled line."""
    for _, _, kind, _, _ in _lines(path, Problems()):
        return "detection" if kind == DETECTION else "classification"
    raise DataError(f"{path} holds no line with a Ground Truth bounding-box or image-classification label")


def read(path: Path, images: Path | None, problems: Problems) -> list[RawImage]:
    """Every bounding-box line as a raw annotated image (class names from each line's class-map)."""
    images = images or image_dir(path)
    out = []
    for where, ref, kind, label, meta in _lines(path, problems):
        if kind != DETECTION:
            problems.add("corrupt annotation", where, f"a {kind} label in a bounding-box manifest; line skipped")
            continue
        try:
            names = {class_number(k): str(v) for k, v in meta.get("class-map", {}).items()}
            size = label["image_size"][0]
            objects = [RawObject(names.get(class_number(a["class_id"]), str(a["class_id"])),
                                 float(a["left"]), float(a["top"]), float(a["left"]) + float(a["width"]),
                                 float(a["top"]) + float(a["height"]), class_id=class_number(a["class_id"]))
                       for a in label["annotations"]]
            out.append(RawImage(path=find_image(images, ref), size=(int(size["width"]), int(size["height"])),
                                objects=objects, source=where))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            problems.add("corrupt annotation", where, f"not a bounding-box label ({type(e).__name__}: {e}); skipped")
    return out


def read_labels(path: Path, images: Path | None, classes: list[str] | None,
                problems: Problems) -> tuple[list[Sample], list[str]]:
    """Every image-classification line as a sample; classes ordered by their class id unless given.
    Images in the image folder that no line mentions are reported."""
    images = images or image_dir(path)
    found: list[tuple[str, Path, str, float | None]] = []
    reported: set = set()
    for where, ref, kind, label, meta in _lines(path, problems):
        name = meta.get("class-name") if isinstance(meta, dict) else None
        if kind != CLASSIFICATION or class_number(label) is None:
            problems.add("corrupt annotation", where, f"not an image-classification label ({kind}); line skipped")
            continue
        name = cleaned_name(str(name if name is not None else int(class_number(label))), where, problems, reported)
        if not name:
            problems.add("empty class name", where, "the label's class-name is empty; image skipped", images=1)
            continue
        found.append((where, find_image(images, ref), name, class_number(label)))
    if classes is None:
        classes = ordered_classes((name, number) for _, _, name, number in found)
    index = {name: i for i, name in enumerate(classes)}
    samples = []
    for where, image, name, _ in found:
        if name not in index:
            problems.add("unknown class", where, f"class {name!r} is not one of {classes}; image skipped", images=1)
        elif not image.is_file():
            problems.add("annotation without image", where, absent_image(image))
        else:
            samples.append(Sample(path=image, rel="", label=index[name]))
    report_orphans(images, {image for _, image, _, _ in found}, problems)  # images no line mentions
    return samples, classes


def _lines(path: Path, problems: Problems):
    """(where, source-ref, label type, label, metadata) of every line that carries a Ground Truth label."""
    with open(path, encoding="utf-8", errors="replace") as f:  # a damaged line is reported, not fatal
        for n, text in enumerate(f, start=1):
            if not text.strip():
                continue
            where = f"{path}:{n}"
            try:
                line = json.loads(text)
                ref = line["source-ref"]
            except (ValueError, KeyError, TypeError):
                problems.add("corrupt annotation", where, "not a JSON line with a source-ref; skipped")
                continue
            labelled = [(key, line[key], line[f"{key}-metadata"]) for key in line
                        if isinstance(line.get(f"{key}-metadata"), dict)
                        and line[f"{key}-metadata"].get("type") in (DETECTION, CLASSIFICATION)]
            if not labelled:
                problems.add("unlabelled line", where, "the line has no Ground Truth bounding-box or image-classification "
                             "label; skipped")
                continue
            key, label, meta = labelled[0]
            yield where, str(ref), meta["type"], label, meta
