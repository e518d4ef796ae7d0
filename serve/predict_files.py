"""`magiccards predict MODEL_DIR INPUT... --out DIR`: images, folders, a video file or a camera.

Each image gives `<name>.jpg` (annotated: boxes, names and scores, or the top classes) and `<name>.json`
(the result in the server's format, with class names). `<name>` is the file's name without its suffix;
inputs that share one (`a/p.jpg b/p.jpg`, `p.jpg p.png`) get their folders in it (`a__p`, `b__p`), or a
suffix, so no answer overwrites another, and the renaming is said. A video or a camera gives one annotated JPEG
per frame predicted, in a folder of its name, and one JSON listing every frame.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from magiccards.data.samples import IMAGE_SUFFIXES
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from magiccards.errors import UserError
from magiccards.files import atomic_path, write_text_atomic, writing

from .images import ImageError, decode_image
from .predictor import Predictor

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230)]


def result_json(result, task: str) -> dict:
    """One result as JSON: the built-in algorithm's fields plus class names."""
    if task == "classification":
        return {"prediction": result.probabilities, "labels": result.classes,
                "predicted_label": result.classes[result.predicted_label]}
    return {"prediction": [d.as_row() for d in result], "names": [d.name for d in result]}


def annotate(image: np.ndarray, result, task: str, top_k: int = 3) -> Image.Image:
    """The image with its result drawn on it."""
    picture = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(12, picture.height // 30))
    if task == "classification":
        lines = [f"{name}: {p:.2f}" for name, p in result.top(top_k)]
        draw.rectangle((0, 0, picture.width, (font.size + 4) * len(lines) + 4), fill=(0, 0, 0))
        for i, line in enumerate(lines):
            draw.text((4, 2 + i * (font.size + 4)), line, fill=(255, 255, 255), font=font)
        return picture
    w, h = picture.size
    for d in result:
        colour = COLOURS[d.class_id % len(COLOURS)]
        box = (d.box[0] * w, d.box[1] * h, d.box[2] * w, d.box[3] * h)
        draw.rectangle(box, outline=colour, width=max(2, w // 200))
        label = f"{d.name} {d.score:.2f}"
        top = max(0, box[1] - font.size - 4)
        draw.rectangle((box[0], top, box[0] + draw.textlength(label, font=font) + 6, top + font.size + 4), fill=colour)
        draw.text((box[0] + 3, top + 2), label, fill=(0, 0, 0), font=font)
    return picture


def output_names(paths: list[Path]) -> tuple[dict[Path, str], list[str]]:
    """{input: output stem}, unique, and a line for each input that could not keep its plain stem. Inputs
    sharing a stem get their nearest folders in front (joined with __: a/p.jpg, b/p.jpg -> a__p, b__p), as
    few as tell them apart; those the folders cannot tell apart (p.jpg and p.png) get -2, -3..."""
    paths = [Path(p) for p in paths]
    names = {p: p.stem for p in paths}
    groups: dict[str, list[Path]] = {}
    for p in paths:
        groups.setdefault(p.stem, []).append(p)
    for stem, group in groups.items():
        if len(group) < 2:
            continue
        folders = [p.absolute().parent.parts for p in group]
        distinct = len(set(folders))  # what folders can tell apart at most
        if distinct < 2:
            continue
        for depth in range(1, max(len(f) for f in folders) + 1):
            tried = ["__".join([*f[len(f) - depth:], stem]) for f in folders]
            if len(set(tried)) == distinct:
                names.update(zip(group, tried))
                break
    seen: dict[str, int] = {}
    for p in paths:
        seen[names[p]] = seen.get(names[p], 0) + 1
        if seen[names[p]] > 1:
            names[p] = f"{names[p]}-{seen[names[p]]}"
    notes = [f"{p} shares its name with another input: written as {names[p]}.jpg and .json"
             for p in paths if names[p] != p.stem]
    return names, notes


def _image_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    return [path]


def video_frames(source: str | Path, every: int, limit: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, RGB frame) of a video file or a camera index, every `every`-th, at most `limit`."""
    import cv2

    capture = cv2.VideoCapture(int(source) if str(source).isdigit() else str(source))
    if not capture.isOpened():
        raise UserError(f"cannot open {'camera' if str(source).isdigit() else 'video'} {source}")
    try:
        n = taken = 0
        while limit is None or taken < limit:
            ok, frame = capture.read()
            if not ok:
                break
            if n % every == 0:
                yield n, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                taken += 1
            n += 1
    finally:
        capture.release()


def predict_inputs(predictor: Predictor, inputs: list[str], out: Path, score_threshold: float = 0.3,
                   top_k: int = 3, every: int = 1, frames: int | None = None, progress: bool = True,
                   log=print) -> dict:
    """Predict every input and write the results into `out`; returns counts of what was done."""
    out = Path(out)
    with writing(f"the prediction output {out}"):
        out.mkdir(parents=True, exist_ok=True)
    counts = {"images": 0, "frames": 0, "skipped": 0}
    images, videos = [], []
    for item in inputs:
        path = Path(item)
        if str(item).isdigit() and not path.exists():
            videos.append(item)  # a camera index
        elif not path.exists():
            raise UserError(f"input {item} does not exist")
        elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(path)
        else:
            images += _image_files(path)
    task = predictor.task
    stems, notes = output_names(images)
    for note in notes:
        log(note)
    for path in tqdm(images, desc="predict", unit="image", disable=None if progress else True):
        try:
            image = decode_image(path.read_bytes())
        except (ImageError, OSError) as e:
            log(f"skipped {path}: {e}")
            counts["skipped"] += 1
            continue
        result = predictor.predict([image], score_threshold=score_threshold, top_k=None)[0]
        _write(out / stems[path], image, result, task, top_k)
        counts["images"] += 1
    for video in videos:
        name = f"camera-{video}" if str(video).isdigit() else Path(video).stem
        listing = []
        bar = tqdm(desc=f"predict {name}", unit="frame", disable=None if progress else True)
        for n, frame in video_frames(video, every, frames):
            result = predictor.predict([frame], score_threshold=score_threshold)[0]
            _write(out / name / f"frame-{n:06d}", frame, result, task, top_k, with_json=False)
            listing.append({"frame": n, **result_json(result, task)})
            counts["frames"] += 1
            bar.update()
        bar.close()
        with writing(f"the prediction output {out}"):
            write_text_atomic(out / f"{name}.json", json.dumps({"source": str(video), "frames": listing}, indent=1))
    return counts


def _write(stem: Path, image: np.ndarray, result, task: str, top_k: int, with_json: bool = True) -> None:
    with writing(f"the prediction output {stem.parent}"):
        stem.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(stem.with_suffix(".jpg")) as tmp:
            annotate(image, result, task, top_k).save(tmp, "JPEG", quality=90)
        if with_json:
            write_text_atomic(stem.with_suffix(".json"), json.dumps(result_json(result, task), indent=1))

