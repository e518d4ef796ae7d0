"""Pascal VOC XML: one file per image (`annotations/*.xml`), images beside in `images/` or `JPEGImages/`."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from tqdm import tqdm

from ..samples import Problems
from .common import RawImage, RawObject, find_image

ANNOTATION_DIRS = ("annotations", "Annotations")
IMAGE_DIRS = ("images", "JPEGImages", "Images")


def annotation_dir(root: Path) -> Path:
    for name in ANNOTATION_DIRS:
        if (root / name).is_dir():
            return root / name
    return root


def image_dir(root: Path) -> Path:
    for name in IMAGE_DIRS:
        if (root / name).is_dir():
            return root / name
    return root


def looks_like(root: Path) -> bool:
    return root.is_dir() and any(annotation_dir(root).glob("*.xml"))


def read(root: Path, images: Path | None, problems: Problems) -> list[RawImage]:
    """Every XML file under the annotation folder, resolved against the image folder."""
    images = images or image_dir(root)
    out = []
    files = sorted(annotation_dir(root).glob("*.xml"))
    for xml_path in tqdm(files, desc="annotations", unit="file", leave=False, disable=None):  # a bar on a terminal only
        try:
            tree = ET.parse(xml_path).getroot()
        except ET.ParseError as e:
            problems.add("corrupt annotation", xml_path, f"not valid XML ({e}); skipped")
            continue
        try:
            out.append(_parse(tree, xml_path, images))
        except (TypeError, ValueError) as e:
            problems.add("corrupt annotation", xml_path, f"{e}; skipped")
    return out


def _parse(tree: ET.Element, xml_path: Path, images: Path) -> RawImage:
    filename = (tree.findtext("filename") or "").strip()
    path = find_image(images, filename, stem=xml_path.stem)
    size = None
    w, h = tree.findtext("size/width"), tree.findtext("size/height")
    if w and h and float(w) > 0 and float(h) > 0:
        size = (int(float(w)), int(float(h)))
    objects = []
    for obj in tree.iter("object"):
        name = obj.findtext("name") or ""  # cleaned (and an empty one counted) by common.index_classes
        box = obj.find("bndbox")
        if box is None:
            raise ValueError("an <object> lacks <bndbox>")
        coords = [float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        objects.append(RawObject(name, *coords))
    return RawImage(path=path, size=size, objects=objects, source=str(xml_path))


def write(path: Path, filename: str, width: int, height: int, objects: list[tuple[str, int, int, int, int]]) -> None:
    """Write one Pascal VOC annotation (objects as (name, xmin, ymin, xmax, ymax) pixels)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "images"
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for name, xmin, ymin, xmax, ymax in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (xmin, ymin, xmax, ymax)):
            ET.SubElement(box, tag).text = str(int(value))
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=False)
