"""The in-memory dataset every reader produces and every writer consumes.

A `Sample` is one image file with either a class index (classification) or boxes in the pixel
frame of the annotation (detection). A `Problems` collects what was skipped and why, so tools can
count and list it instead of failing on the first bad file.
"""
from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

from magiccards.errors import DataError
from magiccards.files import write_text_atomic

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclasses.dataclass
class Box:
    """One object: class index and corners in pixels of the annotated image."""

    cls: int
    xmin: float
    ymin: float
    xmax: float
    ymax: float


@dataclasses.dataclass
class Sample:
    """One image. `label` is the class index for classification; `boxes` is set for detection.

    `size` is (width, height) as the annotation states it, when it does: boxes are in that frame.
    `crop` (a classification sample cut from a detection photo, see `load.as_crops`) is the box whose
    square surroundings are the image.
    """

    path: Path
    rel: str
    label: int | None = None
    boxes: list[Box] | None = None
    size: tuple[int, int] | None = None
    crop: Box | None = None

    @property
    def is_detection(self) -> bool:
        return self.boxes is not None


@dataclasses.dataclass
class Problem:
    kind: str
    item: str
    reason: str
    images: int = 0  # image files this problem kept out of the pack

    def __str__(self) -> str:
        return f"{self.kind}: {self.item}: {self.reason}"


class Problems:
    """Skipped or repaired items, grouped by kind (e.g. 'corrupt image', 'box outside image')."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, kind: str, item: str | Path, reason: str, images: int = 0) -> None:
        """Record a problem; `images` is how many image files it keeps out of the pack."""
        self.items.append(Problem(kind, str(item), reason, images))

    def extend(self, problems: list[Problem]) -> None:
        self.items.extend(problems)

    def skipped_images(self) -> int:
        return sum(p.images for p in self.items)

    def counts(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.items))

    def __len__(self) -> int:
        return len(self.items)

    def as_json(self) -> list[dict]:
        return [dataclasses.asdict(p) for p in self.items]


def is_image_file(path: Path) -> bool:
    """True for a visible file whose suffix names an image format."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


# what str.splitlines() breaks a line at, and tabs: none of them can sit inside a line of classes.txt
_LINE_BREAKS = re.compile(r"\s*[\t\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]+\s*")


def clean_class_name(name) -> str:
    """A class name as one line of classes.txt holds it: surrounding whitespace stripped, each run of
    line breaks or tabs inside (with the spaces around it) replaced by one space ('' for an empty name)."""
    return _LINE_BREAKS.sub(" ", str(name)).strip()


def check_class_names(names, source: str) -> list[str]:
    """Class names a user gives (`--classes`, `synth --classes`), cleaned; an empty or repeated name is
    a DataError, since either would shift every later class index."""
    cleaned = [clean_class_name(n) for n in names]
    empty = [i for i, n in enumerate(cleaned) if not n]
    if empty:
        raise DataError(f"{source}: class {empty[0]} has an empty name; every class needs a name")
    repeated = sorted({n for n in cleaned if cleaned.count(n) > 1})
    if repeated:
        raise DataError(f"{source}: class name(s) {', '.join(map(repr, repeated))} appear more than once")
    return cleaned


def read_classes(path: Path) -> list[str]:
    """Class names, one per line (index = line number), as `classes.txt` holds them.

    A blank line before the last name, or a name given twice, is a DataError: it would shift indices."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"class list {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"class list {path} cannot be read as text ({e})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    blank = [n for n, line in enumerate(lines, 1) if not line.strip()]
    if blank:
        raise DataError(f"class list {path}: line {blank[0]} is empty, yet line number = class index; "
                        "remove the blank line (later classes would shift) or name the class")
    return check_class_names(lines, f"class list {path}")


def write_classes(path: Path, names: list[str]) -> None:
    """classes.txt, one name per line; refuses names that would not read back as written."""
    bad = [n for n in names if n != clean_class_name(n) or not n]
    if bad:
        raise DataError(f"class name(s) {bad} cannot be stored one per line (empty, or a line break, tab or "
                        "surrounding space)")
    write_text_atomic(Path(path), "".join(f"{n}\n" for n in names))
