"""A folder of card images (`synth --faces DIR`): one image per card a user owns, read into RGBA faces.

Two layouts, mixable: a file per class (`king-of-spades.png`: the class is the file name without its
suffix) or a folder per class holding one or more images (`king/Ks.png`, `king/Kh.png`: all drawn for
that class). Class names are cleaned the same way for both (lower case, runs of spaces, underscores and
dashes as one `-`). Any size and aspect; JPEG, PNG, WebP (any format Pillow reads); a phone photo's EXIF
orientation applied; an alpha channel kept. A face whose corners are square gets the rounded corners of
a real card: the plain background a scan leaves in its corners is made transparent, and the corners
are rounded at a card's radius.

Everything is checked before anything is written; each problem is one line with a count:
an unreadable image is skipped and listed (a class left without an image is an error naming it), an
image under 64 px on its shorter side, the same picture under two classes, an empty folder, folders
nested more than one level, names that clash once cleaned.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from magiccards.errors import DataError

from .samples import Problem, is_image_file

MIN_SIDE = 64  # pixels on the shorter side: below this a face has no detail left to learn
LONG_SIDE = 448  # faces are kept at most this long: a 512 px scene draws a card at most ~300 px tall
CORNER_RADIUS = 3.2 / 63  # of the card's width: 3 mm on a 63 mm poker card
CORNER_BOX = 0.12  # share of the shorter side searched for a scan's background in each corner
OPAQUE = 250


@dataclasses.dataclass(frozen=True)
class FaceSet:
    """Card faces per class, in class order: RGBA uint8 arrays (transparent outside the card)."""

    classes: tuple[str, ...]
    images: tuple[tuple[np.ndarray, ...], ...]
    sources: tuple[tuple[str, ...], ...]  # the file each face was read from, relative to the folder
    skipped: tuple[Problem, ...] = ()

    def __len__(self) -> int:
        return len(self.classes)

    def count(self) -> int:
        return sum(len(i) for i in self.images)


def class_name(stem: str) -> str:
    """A class name from a file or folder name: 'King of_Spades' -> 'king-of-spades'."""
    return re.sub(r"[\s_\-]+", "-", stem.strip().lower()).strip("-")


def load_faces(folder: Path, classes: list[str] | None = None) -> FaceSet:
    """Read and check the card images of `folder` (see the module docstring); `classes` picks a subset,
    in that order. Raises DataError for a folder it cannot use."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--faces {folder} is not a folder")
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # no OpenCV thread pool in a process about to fork synth's workers: they would hang on it
    try:
        return _load(folder, classes)
    finally:
        cv2.setNumThreads(threads)


def _load(folder: Path, classes: list[str] | None) -> FaceSet:
    by_class = _files_by_class(folder)
    if classes is not None:
        wanted = [class_name(c) for c in classes]
        unknown = [c for c in wanted if c not in by_class]
        if unknown:
            hints = "; ".join(f"{c!r}: did you mean {m[0]!r}?" for c in unknown
                              if (m := difflib.get_close_matches(c, list(by_class), 1)))
            raise DataError(f"--classes: {len(unknown)} name(s) with no card image in {folder}: "
                            f"{', '.join(unknown)}" + (f" ({hints})" if hints else ""))
        by_class = {c: by_class[c] for c in wanted}
    skipped: list[Problem] = []
    small: list[str] = []
    seen: dict[str, tuple[str, str]] = {}  # pixel hash -> (class, file)
    twice: list[str] = []
    images: dict[str, list[np.ndarray]] = {}
    sources: dict[str, list[str]] = {}
    for cls, files in by_class.items():
        for path in files:
            rel = str(path.relative_to(folder))
            try:
                rgba = read_rgba(path)
            except DataError as e:
                skipped.append(Problem("unreadable image", rel, str(e), 1))
                continue
            h, w = rgba.shape[:2]
            if min(h, w) < MIN_SIDE:
                small.append(f"{rel} ({w}x{h})")
                continue
            digest = hashlib.sha256(rgba.tobytes() + repr(rgba.shape).encode()).hexdigest()
            if digest in seen and seen[digest][0] != cls:
                twice.append(f"{seen[digest][1]} ({seen[digest][0]}) and {rel} ({cls})")
                continue
            if digest in seen:
                continue  # the same picture twice in one class: drawn once
            seen[digest] = (cls, rel)
            images.setdefault(cls, []).append(face(rgba))
            sources.setdefault(cls, []).append(rel)
    if small:
        raise DataError(f"{len(small)} image(s) under {MIN_SIDE} px on the shorter side, too small to learn a card "
                        f"from: {', '.join(small[:5])}{' ...' if len(small) > 5 else ''}")
    if twice:
        raise DataError(f"{len(twice)} picture(s) under two classes (their labels would contradict): "
                        f"{'; '.join(twice[:5])}{' ...' if len(twice) > 5 else ''}")
    empty = [c for c in by_class if not images.get(c)]
    if empty:
        reasons = "; ".join(f"{p.item}: {p.reason}" for p in skipped[:3])
        raise DataError(f"{len(empty)} class(es) left with no readable image: {', '.join(empty[:10])}"
                        + (f" ({len(skipped)} unreadable: {reasons})" if skipped else ""))
    names = tuple(by_class)
    return FaceSet(names, tuple(tuple(images[c]) for c in names), tuple(tuple(sources[c]) for c in names),
                   tuple(skipped))


def _files_by_class(folder: Path) -> dict[str, list[Path]]:
    """Class name -> its image files (sorted), from either layout; the layout's errors as DataError."""
    claims: dict[str, list[str]] = {}
    files: dict[str, list[Path]] = {}
    too_deep: list[str] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            inside = sorted(p for p in entry.iterdir() if not p.name.startswith("."))
            too_deep += [str(p.relative_to(folder)) for p in inside if p.is_dir()]
            found = [p for p in inside if is_image_file(p)]
            if not found:
                continue  # a folder of notes or an empty one: not a class
            name = class_name(entry.name)
        elif is_image_file(entry):
            name, found = class_name(entry.stem), [entry]
        else:
            continue  # README, LICENSE, a contact sheet's notes: not card images
        if not name:
            raise DataError(f"{entry}: its name leaves no class name once cleaned")
        claims.setdefault(name, []).append(entry.name + ("/" if entry.is_dir() else ""))
        files.setdefault(name, []).extend(found)
    if too_deep:
        raise DataError(f"{folder}: {len(too_deep)} folder(s) nested more than one level ({', '.join(too_deep[:3])}); "
                        "put each class's images directly in its folder")
    clashes = {n: c for n, c in claims.items() if len(c) > 1}
    if clashes:
        said = "; ".join(f"{' and '.join(c)} are both class {n!r}" for n, c in list(clashes.items())[:5])
        raise DataError(f"{len(clashes)} class name(s) clash once cleaned (lower case, - for spaces): {said}")
    if not files:
        raise DataError(f"--faces {folder} holds no card image (JPEG, PNG or WebP), neither as files nor in class folders")
    return {name: sorted(files[name]) for name in sorted(files)}


def read_rgba(path: Path) -> np.ndarray:
    """An image file as an RGBA uint8 array, EXIF orientation applied; DataError when it cannot be read."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
            has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            rgba = np.asarray(im.convert("RGBA"))
    except Image.DecompressionBombError as e:
        raise DataError(f"refused, too many pixels ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's errors for a truncated or corrupt file
        raise DataError(f"cannot be read as an image ({e})") from None
    if not has_alpha:
        rgba = rgba.copy()
        rgba[..., 3] = 255
    return rgba


def face(rgba: np.ndarray) -> np.ndarray:
    """A card image ready to draw: at most LONG_SIDE long, corners rounded unless already transparent."""
    h, w = rgba.shape[:2]
    scale = LONG_SIDE / max(h, w)
    if scale < 1:
        rgba = cv2.resize(rgba, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    corners = rgba[[0, 0, -1, -1], [0, -1, 0, -1], 3]
    if (corners < OPAQUE).all():
        return np.ascontiguousarray(rgba)  # the image draws its own corners
    out = rgba.copy()
    out[..., 3] = np.minimum(out[..., 3], _corner_background(rgba[..., :3]))
    out[..., 3] = np.minimum(out[..., 3], rounded_mask(*out.shape[:2]))
    return out


def rounded_mask(h: int, w: int) -> np.ndarray:
    """255 inside a card of h x w pixels with a real card's rounded corners, 0 outside (anti-aliased)."""
    r = max(1.0, CORNER_RADIUS * min(h, w))
    k = 4  # supersampling
    big = np.zeros((h * k, w * k), np.uint8)
    rk = int(round(r * k))
    cv2.rectangle(big, (rk, 0), (w * k - 1 - rk, h * k - 1), 255, -1)
    cv2.rectangle(big, (0, rk), (w * k - 1, h * k - 1 - rk), 255, -1)
    for cx, cy in ((rk, rk), (w * k - 1 - rk, rk), (rk, h * k - 1 - rk), (w * k - 1 - rk, h * k - 1 - rk)):
        cv2.circle(big, (cx, cy), rk, 255, -1, lineType=cv2.LINE_AA)
    return cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)


def _corner_background(rgb: np.ndarray) -> np.ndarray:
    """255 everywhere except the plain background a scan leaves around a card's rounded corners (0 there):
    flood-filled from each corner pixel, kept only when it is corner-shaped (small, inside the corner box)."""
    h, w = rgb.shape[:2]
    box = max(4, int(CORNER_BOX * min(h, w)))
    alpha = np.full((h, w), 255, np.uint8)
    for ys, xs in ((slice(0, box), slice(0, box)), (slice(0, box), slice(w - box, w)),
                   (slice(h - box, h), slice(0, box)), (slice(h - box, h), slice(w - box, w))):
        patch = np.ascontiguousarray(rgb[ys, xs])
        seed = (0 if xs.start == 0 else box - 1, 0 if ys.start == 0 else box - 1)
        mask = np.zeros((box + 2, box + 2), np.uint8)
        cv2.floodFill(patch.copy(), mask, seed, (0, 0, 0), (24, 24, 24), (24, 24, 24),
                      4 | cv2.FLOODFILL_MASK_ONLY | (255 << 8))
        filled = mask[1:-1, 1:-1] > 0
        if filled.sum() <= 0.3 * box * box:  # a rounded corner's outside is ~0.21 r^2: more is the card itself
            alpha[ys, xs][filled] = 0
    return cv2.GaussianBlur(alpha, (3, 3), 0)
