"""`magiccards inspect`: what a .rec holds (classes, sizes, boxes) and a PNG contact sheet of it."""
from __future__ import annotations

import io
import math
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from magiccards.errors import DataError
from magiccards.files import atomic_path, writing

from .charts import draw_stats
from .labels import parse_detection_label
from .recordio_reader import read_at, read_index, unpack_image_record
from .recordio_reader import read_records as raw_records
from .samples import read_classes

THUMB = 192
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]


def read_records(rec: Path):
    """Yield (header, image bytes) for every record, reading sequentially (no .idx needed)."""
    for item in raw_records(rec):
        yield unpack_image_record(item)


def inspect_rec(rec: Path, classes: Path | None = None, sheet: Path | None = None, samples: int = 24,
                charts: Path | None = None, progress: bool = True) -> dict:
    """Statistics of a .rec; draws `samples` evenly spaced records to `sheet` (default FILE.sheet.png)
    and the statistics as charts to `charts` (default FILE.stats.png)."""
    rec = Path(rec)
    if not rec.is_file():
        raise DataError(f"{rec} does not exist")
    if samples < 0:
        raise DataError(f"--samples must be 0 (no contact sheet) or more; got {samples}")
    for flag, path in (("--sheet", sheet), ("--charts", charts)):
        if path is not None and Path(path).is_dir():
            raise DataError(f"{flag} {path} is a folder; give the PNG file to write, e.g. {Path(path) / 'sheet.png'}")
    names_file = Path(classes) if classes else rec.with_name("classes.txt")
    names = read_classes(names_file) if classes or names_file.is_file() else []
    headers, sizes = [], []  # image bytes are not kept: a .rec can be far larger than memory
    for i, (header, data) in enumerate(tqdm(read_records(rec), desc="inspect", unit="rec", disable=not progress)):
        try:
            img = Image.open(io.BytesIO(data))
            sizes.append(img.size)
        except OSError:
            raise DataError(f"record {i} of {rec} does not hold a decodable image") from None
        headers.append(header)
    if not headers:
        raise DataError(f"{rec} holds no record")
    task = "detection" if headers[0].flag > 1 else "classification"
    stats = {"file": str(rec), "records": len(headers), "task": task}
    widths, heights = np.array([s[0] for s in sizes]), np.array([s[1] for s in sizes])
    stats["image_size"] = {"width_min": int(widths.min()), "width_max": int(widths.max()),
                           "height_min": int(heights.min()), "height_max": int(heights.max()),
                           "most_common": "x".join(map(str, Counter(sizes).most_common(1)[0][0]))}
    label_of = lambda c: names[c] if 0 <= c < len(names) else str(c)  # noqa: E731
    every_class = lambda counts: {label_of(c): counts.get(c, 0) for c in sorted(set(range(len(names))) | set(counts))}  # noqa: E731
    objects, corners = [], None
    if task == "classification":
        per_class = Counter(int(np.asarray(h.label).ravel()[0]) for h in headers)
        stats["images_per_class"] = every_class(per_class)
    else:
        for h in headers:
            objects.append(parse_detection_label(h.label)[1])
        allobj = np.concatenate(objects)
        corners = allobj[:, 1:5]
        per_class = Counter(int(c) for c in allobj[:, 0])
        bw, bh = allobj[:, 3] - allobj[:, 1], allobj[:, 4] - allobj[:, 2]
        counts = np.array([len(o) for o in objects])
        stats["objects_per_class"] = every_class(per_class)
        stats["boxes"] = {"total": int(len(allobj)), "per_image_mean": round(float(counts.mean()), 3),
                          "per_image_max": int(counts.max())}
        if len(allobj):  # im2rec can store images without objects
            stats["boxes"].update(relative_width=_summary(bw), relative_height=_summary(bh), relative_area=_summary(bw * bh),
                                  aspect_w_over_h=_summary(bw / np.maximum(bh, 1e-6)))
    charts = Path(charts) if charts else rec.with_suffix(".stats.png")
    per = stats.get("images_per_class") or stats["objects_per_class"]
    with writing(f"the charts {charts}"):
        draw_stats(charts, per, "images" if task == "classification" else "objects", np.array(sizes), corners)
    stats["charts"] = str(charts)
    if samples:
        sheet = Path(sheet) if sheet else rec.with_suffix(".sheet.png")
        picks = np.unique(np.linspace(0, len(headers) - 1, min(samples, len(headers))).astype(int))
        thumbs = _record_bytes(rec, picks.tolist(), [h.id for h in headers])
        with writing(f"the contact sheet {sheet}"):
            draw_sheet(sheet, thumbs, [headers[i] for i in picks], [objects[i] if objects else None for i in picks],
                       label_of)
        stats["sheet"] = str(sheet)
    return stats


def _record_bytes(rec: Path, picks: list[int], ids: list[int]) -> list[bytes]:
    """The image bytes of records number `picks` (in file order): through the .idx when it lists every
    record and points at the right ones (their ids match `ids`), else by reading the file once more."""
    total = len(ids)
    idx = rec.with_suffix(".idx")
    if idx.is_file():
        try:
            offsets = sorted(read_index(idx).values())
            if len(offsets) == total:
                found = [unpack_image_record(r) for r in read_at(rec, [offsets[i] for i in picks])]
                if [h.id for h, _ in found] == [ids[i] for i in picks]:
                    return [data for _, data in found]
        except DataError:
            pass  # a garbage or stale .idx: it only saves a second read, so read the file again instead
    wanted = set(picks)
    return [data for i, (_, data) in enumerate(read_records(rec)) if i in wanted]


def _summary(values: np.ndarray) -> dict:
    return {"min": round(float(values.min()), 4), "mean": round(float(values.mean()), 4),
            "max": round(float(values.max()), 4)}


def draw_sheet(path: Path, images: list[bytes], headers, objects, label_of) -> None:
    """A grid of thumbnails with class names (classification) or boxes and names (detection)."""
    cols = min(6, len(images))
    rows = math.ceil(len(images) / cols)
    sheet = Image.new("RGB", (cols * THUMB, rows * THUMB), (32, 32, 32))
    font = ImageFont.load_default(size=12)
    for k, (data, header, objs) in enumerate(zip(images, headers, objects)):
        img = Image.open(io.BytesIO(data)).convert("RGB")
        img.thumbnail((THUMB - 4, THUMB - 4))
        d = ImageDraw.Draw(img)
        if objs is None:
            c = int(np.asarray(header.label).ravel()[0])
            _tag(d, (2, 2), label_of(c), PALETTE[c % len(PALETTE)], font)
        else:
            w, h = img.size
            for cls, x0, y0, x1, y1 in objs[:, :5]:
                colour = PALETTE[int(cls) % len(PALETTE)]
                d.rectangle((x0 * w, y0 * h, x1 * w, y1 * h), outline=colour, width=2)
                _tag(d, (x0 * w, max(0, y0 * h - 14)), label_of(int(cls)), colour, font)
        x, y = (k % cols) * THUMB + (THUMB - img.width) // 2, (k // cols) * THUMB + (THUMB - img.height) // 2
        sheet.paste(img, (x, y))
    with atomic_path(path) as tmp:
        sheet.save(tmp, "PNG")


def _tag(d: ImageDraw.ImageDraw, xy, text: str, colour, font) -> None:
    x0, y0, x1, y1 = d.textbbox(xy, text, font=font)
    d.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), fill=colour)
    d.text(xy, text, fill=(0, 0, 0), font=font)


def format_stats(stats: dict) -> str:
    """Human-readable report of `inspect_rec`'s statistics."""
    lines = [f"{stats['file']}: {stats['records']} {stats['task']} record(s)"]
    s = stats["image_size"]
    lines.append(f"image sizes: width {s['width_min']}-{s['width_max']}, height {s['height_min']}-{s['height_max']}, "
                 f"most common {s['most_common']}")
    per = stats.get("images_per_class") or stats.get("objects_per_class")
    unit = "images" if "images_per_class" in stats else "objects"
    lines.append(f"{unit} per class:")
    lines += [f"  {name:<24} {n}" for name, n in per.items()]
    if "boxes" in stats:
        b = stats["boxes"]
        lines.append(f"boxes: {b['total']} ({b['per_image_mean']} per image, at most {b['per_image_max']})")
        for key in ("relative_width", "relative_height", "relative_area", "aspect_w_over_h"):
            if key not in b:
                continue
            v = b[key]
            lines.append(f"  {key:<16} min {v['min']:<8} mean {v['mean']:<8} max {v['max']}")
    lines.append(f"charts: {stats['charts']}")
    if "sheet" in stats:
        lines.append(f"contact sheet: {stats['sheet']}")
    return "\n".join(lines)
