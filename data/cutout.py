"""`magiccards faces PHOTOS OUT`: a flat card image cut from one phone photo of each card.

A card lying on a plain surface is the photo's largest convex quadrilateral of a card's shape: found on
edges (Canny) and on the light/dark split (Otsu) of the photo, approximated to four corners, and warped
flat to a portrait image at the card's aspect ratio (measured on the photo, or `aspect`). Each face is
named after its photo (or after `names`, in the photos' sorted order) and written whole or not at all; a
photo where no card is found is listed with the reason and skipped. A contact sheet (PNG) shows what was
cut, so the user can check it before drawing thousands of scenes from it.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from magiccards.errors import DataError
from magiccards.files import write_bytes_atomic, writing

from .faces import class_name, read_rgba
from .samples import Problem, is_image_file

WORK_SIDE = 1024  # the photo is searched at this size: corners are then refined on the full photo
MIN_AREA = 0.04  # a card covers at least this share of the photo
MAX_AREA = 0.98
ASPECTS = (0.45, 1.0)  # shorter / longer side of anything card-like (tarot 0.58, poker 0.72, square-ish tiles)
FACE_LONG = 640  # the longer side of a face written


@dataclasses.dataclass
class FacesResult:
    out_dir: Path
    written: list[Path]
    skipped: list[Problem]
    sheet: Path | None
    seconds: float


def find_card(rgb: np.ndarray) -> np.ndarray | None:
    """The corners (4x2 float32, clockwise from the top-left of the card held portrait) of the largest
    card-shaped convex quadrilateral in `rgb`, or None."""
    h, w = rgb.shape[:2]
    scale = min(1.0, WORK_SIDE / max(h, w))
    small = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), (5, 5), 0)
    area = grey.shape[0] * grey.shape[1]
    masks = []
    _, otsu = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    masks += [otsu, 255 - otsu]
    edges = cv2.Canny(grey, 30, 90)
    masks.append(cv2.dilate(edges, np.ones((3, 3), np.uint8)))
    best, best_area = None, 0.0
    for mask in masks:
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            hull = cv2.convexHull(contour)
            a = cv2.contourArea(hull)
            if not MIN_AREA * area <= a <= MAX_AREA * area or a <= best_area:
                continue
            quad = _four_corners(hull)
            if quad is None or not _card_shaped(quad, hull):
                continue
            best, best_area = quad, a
    if best is None:
        return None
    corners = best / scale
    return _portrait_order(_refine(rgb, corners))


def _four_corners(hull: np.ndarray) -> np.ndarray | None:
    perimeter = cv2.arcLength(hull, True)
    for eps in (0.01, 0.02, 0.03, 0.05):
        approx = cv2.approxPolyDP(hull, eps * perimeter, True)
        if len(approx) == 4:
            return approx.reshape(4, 2).astype(np.float32)
    return None


def _card_shaped(quad: np.ndarray, hull: np.ndarray) -> bool:
    """Fills its hull (a quadrilateral, not a blob) with sides in a card's proportions."""
    if cv2.contourArea(quad) < 0.9 * cv2.contourArea(hull):
        return False
    sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
    ratio = min(sides[0] + sides[2], sides[1] + sides[3]) / max(sides[0] + sides[2], sides[1] + sides[3])
    return ASPECTS[0] <= ratio <= ASPECTS[1]


def _refine(rgb: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Each corner as the meeting point of the card's two edges, fitted on the full photo's edge pixels
    near the rough quadrilateral (rounded corners cut the quadrilateral's own vertices)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(cv2.GaussianBlur(grey, (5, 5), 0), 30, 90)
    ys, xs = np.nonzero(edges)
    points = np.stack([xs, ys], 1).astype(np.float32)
    lines = []
    centre = corners.mean(axis=0)
    for i in range(4):
        a, b = corners[i], corners[(i + 1) % 4]
        length = float(np.linalg.norm(b - a))
        d = (b - a) / max(length, 1e-6)
        normal = np.array([-d[1], d[0]], np.float32)
        if (centre - a) @ normal > 0:
            normal = -normal  # pointing out of the card
        rel = points - a
        along, off = rel @ d, rel @ normal
        near = (np.abs(off) < max(4.0, 0.06 * length)) & (along > 0.1 * length) & (along < 0.9 * length)
        if near.sum() < 20:
            return corners
        # the outline is the outermost edge across the side (inside lie the face's own frame lines), one
        # point per pixel step along it
        steps = np.round(along[near]).astype(np.int64)
        order = np.lexsort((-off[near], steps))
        first = np.unique(steps[order], return_index=True)[1]
        outline = points[near][order][first]
        vx, vy, x0, y0 = cv2.fitLine(outline, cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
        lines.append((np.array([x0, y0]), np.array([vx, vy])))
    refined = []
    for i in range(4):
        (p1, d1), (p2, d2) = lines[i - 1], lines[i]
        m = np.array([d1, -d2]).T
        if abs(np.linalg.det(m)) < 1e-6:
            return corners
        t = np.linalg.solve(m, p2 - p1)
        refined.append(p1 + t[0] * d1)
    refined = np.array(refined, np.float32)
    if np.abs(refined - corners).max() > 0.1 * np.linalg.norm(corners[0] - corners[2]):
        return corners  # the fit ran off along something else: keep the rough corners
    return refined


def _portrait_order(quad: np.ndarray) -> np.ndarray:
    """Corners clockwise (in the image) starting so that the first side is a short side (the card's top)."""
    centre = quad.mean(axis=0)
    angles = np.arctan2(quad[:, 1] - centre[1], quad[:, 0] - centre[0])
    quad = quad[np.argsort(angles)]  # clockwise on screen (y grows downwards)
    start = int(np.argmin(quad.sum(axis=1)))  # nearest the photo's top-left
    quad = np.roll(quad, -start, axis=0)
    sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
    if sides[0] + sides[2] > sides[1] + sides[3]:
        quad = np.roll(quad, -1, axis=0)  # the card lies landscape in the photo: its top is the next side
    return quad


def flatten(rgb: np.ndarray, quad: np.ndarray, aspect: float | None = None) -> np.ndarray:
    """The card inside `quad` warped flat, portrait; `aspect` (width / height) or the one measured."""
    sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
    width, height = (sides[0] + sides[2]) / 2, (sides[1] + sides[3]) / 2
    aspect = aspect or width / height
    out_h = int(min(FACE_LONG, max(height, width / aspect)))
    out_w = int(round(out_h * aspect))
    target = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], np.float32)
    m = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    return cv2.warpPerspective(rgb, m, (out_w, out_h), flags=cv2.INTER_AREA if out_h < height else cv2.INTER_CUBIC)


def cut_faces(photos: Path, out_dir: Path, *, names: list[str] | None = None, aspect: float | None = None,
              sheet: Path | None = None, progress: bool = True) -> FacesResult:
    """Cut one face from each photo of the folder (or single file) `photos` into `out_dir`; see the module
    docstring. `sheet`: the contact sheet's path (default OUT-contact-sheet.png beside OUT)."""
    photos, out_dir = Path(photos), Path(out_dir)
    files = [photos] if photos.is_file() else sorted(p for p in photos.iterdir() if is_image_file(p)) \
        if photos.is_dir() else None
    if files is None:
        raise DataError(f"{photos} is neither a photo nor a folder")
    if not files:
        raise DataError(f"{photos} holds no photo (JPEG, PNG or WebP)")
    if aspect is not None and not 0.2 <= aspect <= 5:
        raise DataError(f"--aspect is a card's width / height, e.g. 63:88; got {aspect:g}")
    if names is not None:
        if len(names) != len(files):
            raise DataError(f"--names gives {len(names)} name(s) for {len(files)} photo(s) in {photos}")
        stems = [class_name(n) for n in names]
    else:
        stems = [class_name(p.stem) for p in files]
    clashes = sorted({s for s in stems if stems.count(s) > 1 or not s})
    if clashes:
        raise DataError(f"{len(clashes)} name(s) given to more than one photo once cleaned (or empty): "
                        f"{', '.join(map(repr, clashes[:5]))}")
    sheet = sheet or out_dir.parent / f"{out_dir.name}-contact-sheet.png"
    started = time.perf_counter()
    written: list[Path] = []
    skipped: list[Problem] = []
    cut: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []  # name, photo, quad, face
    with writing(f"the faces in {out_dir}"):
        out_dir.mkdir(parents=True, exist_ok=True)
        for path, stem in tqdm(list(zip(files, stems)), unit="photo", desc="faces", disable=not progress):
            try:
                rgb = read_rgba(path)[..., :3]
            except DataError as e:
                skipped.append(Problem("unreadable image", path.name, str(e), 1))
                continue
            quad = find_card(rgb)
            if quad is None:
                skipped.append(Problem("no card found", path.name, "no card-shaped four-cornered outline stands "
                                       "out; photograph the card flat on a plain surface of another colour, whole", 1))
                continue
            flat = flatten(rgb, quad, aspect)
            target = out_dir / f"{stem}.png"
            ok, buf = cv2.imencode(".png", flat[..., ::-1])
            if not ok:
                raise OSError(f"cannot encode {target}")
            write_bytes_atomic(target, buf.tobytes())
            written.append(target)
            cut.append((stem, rgb, quad, flat))
        if cut:
            write_bytes_atomic(sheet, contact_sheet(cut))
    return FacesResult(out_dir, written, skipped, sheet if cut else None, time.perf_counter() - started)


def contact_sheet(cut: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], cell: int = 200) -> bytes:
    """A PNG: for each photo, the photo with the found outline, and the face cut from it, with its name."""
    columns = min(3, len(cut))
    rows = (len(cut) + columns - 1) // columns
    sheet = np.full((rows * (cell + 24), columns * 2 * cell, 3), 255, np.uint8)
    for k, (name, photo, quad, flat) in enumerate(cut):
        y, x = (k // columns) * (cell + 24), (k % columns) * 2 * cell
        for j, (img, outline) in enumerate(((photo, quad), (flat, None))):
            s = cell / max(img.shape[:2])
            small = cv2.resize(img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))),
                               interpolation=cv2.INTER_AREA).copy()
            if outline is not None:
                cv2.polylines(small, [np.round(outline * s).astype(np.int32)], True, (0, 200, 0), 2)
                cv2.circle(small, tuple(int(v) for v in np.round(outline[0] * s)), 4, (220, 0, 0), -1)  # the top-left
            sheet[y:y + small.shape[0], x + j * cell:x + j * cell + small.shape[1]] = small
        cv2.putText(sheet, name[:28], (x + 4, y + cell + 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", sheet[..., ::-1])
    return buf.tobytes()
