"""COCO JSON: one file with `images`, `annotations` (bbox = [x, y, width, height]) and `categories`."""
from __future__ import annotations

import json
from pathlib import Path

from magiccards.errors import DataError

from ..samples import Problems
from .common import RawImage, RawObject, class_number, find_image, image_size


def looks_like(path: Path) -> bool:
    if path.is_file() and path.suffix.lower() == ".json":
        try:
            head = path.read_text(errors="ignore")[:200000]
        except OSError:
            return False
        return '"categories"' in head and '"images"' in head
    return False


def image_dir(json_path: Path) -> Path:
    return json_path.parent / "images" if (json_path.parent / "images").is_dir() else json_path.parent


def read(json_path: Path, images: Path | None, problems: Problems) -> list[RawImage]:
    """All images of the file; category names become class names."""
    images = images or image_dir(json_path)
    try:
        doc = json.loads(json_path.read_text())
        categories = {c["id"]: str(c["name"]) for c in doc["categories"]}
        entries = {im["id"]: im for im in doc["images"]}
        annotations = doc.get("annotations", [])
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{json_path} is not a COCO annotation file ({type(e).__name__}: {e})") from None
    objects: dict[int, list[RawObject]] = {i: [] for i in entries}
    for n, a in enumerate(annotations):
        where = f"{json_path}#annotations[{n}]"
        if a.get("image_id") not in entries:
            problems.add("annotation without image", where, f"image_id {a.get('image_id')!r} is not in 'images'")
            continue
        if a.get("category_id") not in categories:
            problems.add("unknown class", where, f"category_id {a.get('category_id')!r} is not in 'categories'")
            continue
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
        except (KeyError, TypeError, ValueError):
            problems.add("invalid box", where, f"bbox {a.get('bbox')!r} is not [x, y, width, height]")
            continue
        objects[a["image_id"]].append(RawObject(categories[a["category_id"]], x, y, x + w, y + h,
                                                  class_id=class_number(a["category_id"])))
    out = []
    for image_id, im in entries.items():
        if not isinstance(im.get("file_name"), str) or not im["file_name"]:
            problems.add("corrupt annotation", f"{json_path}#images[id={image_id}]", "the image has no file_name; skipped")
            continue
        where = f"{json_path}#{im['file_name']}"
        size = image_size(im.get("width"), im.get("height"), where, problems)
        out.append(RawImage(path=find_image(images, im["file_name"]), size=size, objects=objects[image_id],
                            source=where))
    return out
