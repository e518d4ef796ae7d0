"""SageMaker object-detection JSON: one file per image (`annotations/*.json`), boxes as left/top/width/height."""
from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from ..samples import Problems
from .common import RawImage, RawObject, class_number, find_image
from .voc import annotation_dir, image_dir


def looks_like(root: Path) -> bool:
    if not root.is_dir():
        return False
    for p in sorted(annotation_dir(root).glob("*.json"))[:3]:
        try:
            doc = json.loads(p.read_text())
        except (ValueError, OSError):
            continue
        if isinstance(doc, dict) and "annotations" in doc and "file" in doc:
            return True
    return False


def read(root: Path, images: Path | None, problems: Problems) -> list[RawImage]:
    """Every JSON file of the annotation folder; `categories` give class names (else the class_id).

    `file` is looked up in the image folder as written, then by its base name (SageMaker's own
    examples write `your_image_directory/name.jpg`).
    """
    images = images or image_dir(root)
    out = []
    files = sorted(annotation_dir(root).glob("*.json"))
    for p in tqdm(files, desc="annotations", unit="file", leave=False, disable=None):  # a bar on a terminal only
        try:
            doc = json.loads(p.read_text())
            names = {c["class_id"]: str(c["name"]) for c in doc.get("categories", [])}
            size = doc["image_size"][0]
            objects = [
                RawObject(names.get(a["class_id"], str(a["class_id"])), float(a["left"]), float(a["top"]),
                          float(a["left"]) + float(a["width"]), float(a["top"]) + float(a["height"]),
                          class_id=class_number(a["class_id"]))
                for a in doc["annotations"]
            ]
            out.append(RawImage(path=find_image(images, doc["file"]),
                                size=(int(size["width"]), int(size["height"])), objects=objects, source=str(p)))
        except (ValueError, KeyError, TypeError, IndexError) as e:
            problems.add("corrupt annotation", p, f"not a SageMaker annotation ({type(e).__name__}: {e}); skipped")
    return out
