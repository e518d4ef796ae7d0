"""`magiccards synth`: render a labelled card dataset from procedural card faces or from the user's own
card images (`faces`: a `faces.FaceSet`, drawn with the realism of a photo: bending, sheen, sleeves'
glare, white balance, the card's shadow).

Classification writes `OUT/<class>/<class>-NNNNNN.jpg`; detection writes `OUT/images/*.jpg`,
`OUT/annotations/*.xml` (Pascal VOC) and `OUT/classes.txt`. Image i is a pure function of
(seed, i), so any worker count gives the same files; each file is written under a temporary name
and renamed, so an interrupted run leaves no half-written image.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from magiccards.errors import UserError
from magiccards.files import atomic_path, write_bytes_atomic, writing

from . import cards, scenes
from .faces import FaceSet, load_faces
from .formats import voc
from .samples import check_class_names, is_image_file, write_classes
from .workers import pool as workers_pool

MIN_VISIBLE = 0.5  # a card placed in a detection scene keeps at least this share of its area visible
MIN_SIZE, MAX_SIZE = 32, 4096


@dataclasses.dataclass
class SynthResult:
    out_dir: Path
    classes: list[str]
    images: int
    objects: int
    seconds: float
    skipped: list = dataclasses.field(default_factory=list)  # card images left out (`faces.load_faces`)


@dataclasses.dataclass(frozen=True)
class _Job:
    out_dir: Path
    task: str
    classes: tuple[str, ...]
    size: int
    photos: tuple[Path, ...]
    max_cards: int
    seed: int
    fans: float = 0.0
    faces: FaceSet | None = None
    distractors: float = 0.0


DISTRACTORS = tuple(f"back-{i}" for i in range(1, 9)) + tuple(cards.class_names(40))


def _card(rng, job: _Job, cls: int) -> np.ndarray:
    """The face of class `cls` (-1: a distractor, a design not among the classes) as drawn in this scene."""
    if cls < 0:
        pool = [n for n in DISTRACTORS if n not in job.classes]
        card = cards.render(pool[int(rng.integers(len(pool)))])
    elif job.faces is None:
        return cards.render(job.classes[cls])
    else:
        options = job.faces.images[cls]
        card = options[int(rng.integers(len(options)))] if len(options) > 1 else options[0]
    if job.faces is None:
        return card
    if rng.random() < 0.3:
        card = scenes.bend(rng, card)
    if rng.random() < 0.5:
        card = scenes.sheen(rng, card, sleeve=rng.random() < 0.4)
    return card


def _quad(rng, card: np.ndarray, centre, height: float, rotation: float, perspective: float) -> np.ndarray:
    """Where a card lands: its own aspect (a landscape image stays landscape), `height` its longer side."""
    h, w = card.shape[:2]
    return scenes.card_quad(rng, w, h, centre, height * h / max(h, w), rotation, perspective)


def _paste(rng, job: _Job, canvas: np.ndarray, card: np.ndarray, quad: np.ndarray) -> np.ndarray:
    if job.faces is not None and rng.random() < 0.5:
        scenes.cast_shadow(rng, canvas, card, quad)
    return scenes.paste(canvas, card, quad)


def classification_scene(rng: np.random.Generator, job: _Job, cls: int) -> np.ndarray:
    """One photo of one card (class index `cls`) filling most of the frame."""
    canvas = scenes.background(rng, job.size, job.size, job.photos)
    card = _card(rng, job, cls)
    size = job.size
    height = size * rng.uniform(0.62, 0.92)
    centre = (size / 2 + rng.uniform(-0.08, 0.08) * size, size / 2 + rng.uniform(-0.06, 0.06) * size)
    rotation = float(np.clip(rng.normal(0, 7), -20, 20)) + (180 if rng.random() < 0.1 else 0)
    quad = _quad(rng, card, centre, height, rotation, perspective=0.07)
    _paste(rng, job, canvas, card, quad)
    return _camera(rng, job, canvas, quad, occlusion=0.3, reach=0.18)


FAN_VISIBLE = 0.12  # a card in a fan may be covered by the next down to a strip holding its index


def _fan(rng, job: _Job, canvas, placed):
    """A hand of 3..6 overlapping cards spread around one pivot, as cards are held or dealt."""
    size, classes = job.size, job.classes
    height = size * rng.uniform(0.22, 0.45)
    pivot = rng.uniform(0.25, 0.75, 2) * size
    base, spread = rng.uniform(-60, 60), rng.uniform(8, 22) * (1 if rng.random() < 0.5 else -1)
    shift = height * rng.uniform(0.12, 0.3)
    for k in range(int(rng.integers(3, 7))):
        cls = int(rng.integers(len(classes)))
        angle = np.deg2rad(base + k * spread)
        centre = pivot + k * shift * np.array([np.cos(angle), np.sin(angle)]) * rng.uniform(0.7, 1.0)
        card = _card(rng, job, cls)
        quad = _quad(rng, card, tuple(centre), height, base + k * spread, perspective=0.05)
        trial = canvas.copy()
        mask = _paste(rng, job, trial, card, quad)
        area = scenes.quad_area(quad)
        if mask.sum() < MIN_VISIBLE * area or any(((m * (1 - mask)).sum() < FAN_VISIBLE * a) for _, m, a in placed):
            continue
        canvas = trial
        placed = [(c, m * (1 - mask), a) for c, m, a in placed] + [(cls, mask, area)]
    return canvas, placed


def detection_scene(rng: np.random.Generator, job: _Job):
    """A table-top scene with 1..max_cards cards (and, with probability `fans`, a fan of overlapping cards
    first; with probability `distractors`, 1..2 cards of other designs, unlabelled); returns the image and
    (class, box) per visible card."""
    size, fans = job.size, job.fans
    canvas = scenes.background(rng, size, size, job.photos)
    placed: list[tuple[int, np.ndarray, float]] = []  # class index (-1: a distractor), coverage mask, full card area
    if fans and rng.random() < fans:
        canvas, placed = _fan(rng, job, canvas, placed)
    others = int(rng.integers(1, 3)) if job.distractors and rng.random() < job.distractors else 0
    count = int(rng.integers(1, job.max_cards + 1))
    for k in range(others + count):
        cls = -1 if k < others else int(rng.integers(len(job.classes)))  # distractors first: labelled cards lie on them
        for _attempt in range(8):
            height = size * rng.uniform(0.2, 0.5)
            centre = rng.uniform(0.1, 0.9, 2) * size
            rotation = rng.uniform(-180, 180) if rng.random() < 0.3 else rng.normal(0, 15)
            card = _card(rng, job, cls)
            quad = _quad(rng, card, centre, height, rotation, perspective=0.06)
            trial = canvas.copy()
            mask = _paste(rng, job, trial, card, quad)
            area = scenes.quad_area(quad)
            if mask.sum() < MIN_VISIBLE * area:
                continue  # mostly outside the frame
            if any(((m * (1 - mask)).sum() < (FAN_VISIBLE if fans else MIN_VISIBLE) * a) for _, m, a in placed):
                continue  # would hide an earlier card
            canvas = trial
            placed = [(c, m * (1 - mask), a) for c, m, a in placed] + [(cls, mask, area)]
            break
    if placed and rng.random() < 0.25:
        c, m, a = placed[int(rng.integers(len(placed)))]
        ys, xs = np.nonzero(m > 0.5)
        quad = np.array([[xs.min(), ys.min()], [xs.max(), ys.min()], [xs.max(), ys.max()], [xs.min(), ys.max()]], np.float32)
        hand = scenes.occluder(rng, canvas, quad, reach=0.15)
        placed = [(c2, m2 * (1 - hand), a2) for c2, m2, a2 in placed]
    objects = []
    for cls, mask, area in placed:
        # opened: the anti-aliased edge of a card lying over this one leaves a 1-pixel line of half-covered
        # pixels all along that edge, which would stretch the box over the hidden part
        visible = cv2.morphologyEx((mask > 0.5).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        ys, xs = np.nonzero(visible)
        if cls >= 0 and len(xs) >= (FAN_VISIBLE if fans else MIN_VISIBLE) * 0.8 * area:
            objects.append((cls, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)))
    whole = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float32)
    return _camera(rng, job, canvas, whole, occlusion=0.0, reach=0.0), objects


def _camera(rng, job: _Job, img, quad, occlusion: float, reach: float) -> np.ndarray:
    if rng.random() < occlusion:
        scenes.occluder(rng, img, quad, reach)
    img = scenes.lighting(rng, img)
    if job.faces is not None and rng.random() < 0.5:
        img = scenes.white_balance(rng, img)
    if rng.random() < 0.35:
        img = scenes.glare(rng, img, quad)
    if rng.random() < 0.35:
        img = scenes.blur(rng, img)
    return scenes.to_uint8(scenes.sensor_noise(rng, img))


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"cannot encode {path}")
    write_bytes_atomic(path, buf.tobytes())


def _render(job: _Job, index: int) -> int:
    """Render and write image `index`; return how many objects it holds."""
    rng = np.random.default_rng([job.seed, index])
    quality = int(rng.integers(75, 96))
    if job.task == "classification":
        name = job.classes[index % len(job.classes)]
        img = classification_scene(rng, job, index % len(job.classes))
        _write_jpeg(job.out_dir / name / f"{name}-{index:06d}.jpg", img, quality)
        return 1
    img, objects = detection_scene(rng, job)
    stem = f"scene-{index:06d}"
    _write_jpeg(job.out_dir / "images" / f"{stem}.jpg", img, quality)
    xml = job.out_dir / "annotations" / f"{stem}.xml"
    with atomic_path(xml) as tmp:
        voc.write(tmp, f"{stem}.jpg", job.size, job.size, [(job.classes[c], *box) for c, box in objects])
    return len(objects)


_JOB: _Job | None = None


def _init(job: _Job) -> None:
    global _JOB
    _JOB = job
    cv2.setNumThreads(1)


def _render_index(index: int) -> int:
    return _render(_JOB, index)


def synth(out_dir: Path, *, task: str = "classification", count: int = 500, classes: int | list[str] | None = None,
          size: int | None = None, backgrounds: Path | None = None, max_cards: int = 4, seed: int = 0,
          workers: int | None = None, fans: float = 0.0, faces: Path | None = None, distractors: float = 0.0,
          progress: bool = True) -> SynthResult:
    """Render `count` images of `classes` (a number or names; default 6, or every card of `faces`) into
    `out_dir`, from procedural designs or the card images of the folder `faces`; see the module docstring."""
    if task not in ("classification", "detection"):
        raise UserError(f"--task must be classification or detection; got {task!r}")
    if not 0 <= distractors <= 1:
        raise UserError(f"--distractors is a probability between 0 and 1; got {distractors}")
    if distractors and task != "detection":
        raise UserError("--distractors is for detection scenes (--task detection): a classification image holds one card")
    face_set = None
    if faces is not None:
        if isinstance(classes, int):
            raise UserError(f"--classes with --faces names the cards to draw (e.g. king,queen), not a number; got {classes}")
        face_set = load_faces(Path(faces), classes)  # every check before anything is written
        names = list(face_set.classes)
    else:
        classes = 6 if classes is None else classes
        names = cards.class_names(classes) if isinstance(classes, int) else check_class_names(classes, "--classes")
    if len(names) < (2 if task == "classification" else 1):
        raise UserError(f"need at least {2 if task == 'classification' else 1} class(es) for {task}; got {names}")
    bad = [n for n in names if not n or "/" in n or n.startswith(".")]
    if bad:
        raise UserError(f"class names must be usable as folder names; bad: {bad}")
    if count < 1:
        raise UserError(f"--count must be at least 1; got {count}")
    if not 0 <= fans <= 1:
        raise UserError(f"--fans is a probability between 0 and 1; got {fans}")
    if max_cards < 1:
        raise UserError(f"--max-cards must be at least 1; got {max_cards}")
    size = size or (256 if task == "classification" else 512)
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise UserError(f"--size must be between {MIN_SIZE} and {MAX_SIZE} pixels; got {size}")
    photos: tuple[Path, ...] = ()
    if backgrounds is not None:
        if not Path(backgrounds).is_dir():
            raise UserError(f"--backgrounds {backgrounds} is not a folder")
        photos = tuple(sorted(p for p in Path(backgrounds).rglob("*") if is_image_file(p)))
        if not photos:
            raise UserError(f"--backgrounds {backgrounds} holds no image file")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1; got {workers}")
    out_dir = Path(out_dir)
    with writing(f"the synth output in {out_dir}"):  # a full disk or an unwritable folder: one clear line
        job = _Job(out_dir, task, tuple(names), size, photos, max_cards, seed, fans, face_set, distractors)
        result = _render_all(out_dir, job, count, workers or os.cpu_count() or 1, progress)
    result.skipped = list(face_set.skipped) if face_set else []
    return result


def _render_all(out_dir: Path, job: _Job, count: int, workers: int, progress: bool) -> SynthResult:
    names = list(job.classes)
    folders = [out_dir / n for n in names] if job.task == "classification" else [out_dir / "images", out_dir / "annotations"]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    write_classes(out_dir / "classes.txt", names)  # the class order; `pack` keeps it
    started = time.perf_counter()
    objects = 0
    with tqdm(total=count, unit="img", desc="synth", disable=not progress) as bar:
        if workers == 1:
            _init(job)
            for i in range(count):
                objects += _render_index(i)
                bar.update()
        else:
            with workers_pool(workers, initializer=_init, initargs=(job,)) as pool:
                chunk = max(1, min(64, count // (workers * 8)))
                for n in pool.map(_render_index, range(count), ordered=False, chunksize=chunk):
                    objects += n
                    bar.update()
    return SynthResult(out_dir, names, count, objects, time.perf_counter() - started)
