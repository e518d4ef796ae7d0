"""CSV boxes: header `filename,width,height,class,xmin,ymin,xmax,ymax`, one row per object."""
from __future__ import annotations

import csv
from pathlib import Path

from magiccards.errors import DataError

from ..samples import Problems
from .common import RawImage, RawObject, find_image

COLUMNS = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]


def looks_like(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".csv"


def image_dir(csv_path: Path) -> Path:
    return csv_path.parent / "images" if (csv_path.parent / "images").is_dir() else csv_path.parent


def read(csv_path: Path, images: Path | None, problems: Problems) -> list[RawImage]:
    """Rows grouped by filename, in order of first appearance."""
    images = images or image_dir(csv_path)
    try:
        return _read(csv_path, images, problems)
    except UnicodeDecodeError as e:
        raise DataError(f"{csv_path} is not a UTF-8 text file ({e.reason} at byte {e.start})") from None


def _read(csv_path: Path, images: Path, problems: Problems) -> list[RawImage]:
    with open(csv_path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets often start with a BOM
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{csv_path} lacks the column(s) {missing}; expected the header {','.join(COLUMNS)}")
        grouped: dict[str, RawImage] = {}
        for line, row in enumerate(reader, start=2):
            where = f"{csv_path}:{line}"
            if any(row.get(k) is None for k in COLUMNS):
                problems.add("invalid box", where, f"row {line} has fewer than the {len(COLUMNS)} columns; skipped")
                continue
            try:
                size = (int(float(row["width"])), int(float(row["height"])))
                obj = RawObject(row["class"].strip(), *(float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")))
            except (TypeError, ValueError):
                problems.add("invalid box", where, f"row {row} has a non-numeric size or coordinate; skipped")
                continue
            name = row["filename"].strip()
            if name not in grouped:
                grouped[name] = RawImage(path=find_image(images, name), size=size, objects=[], source=f"{csv_path}#{name}")
            grouped[name].objects.append(obj)
    return list(grouped.values())
