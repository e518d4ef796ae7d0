"""`magiccards pack`: a dataset folder or annotation file to im2rec-compatible RecordIO.

Writes, per split (`train`, `validation`): `.lst` (im2rec's list), `.rec` and `.idx`
(written without loading MXNet by recordio_writer.py), plus `classes.txt` and `pack-report.json`. Everything is written
under temporary names and renamed only when the whole pack succeeded, so a failure never leaves a
partial `.rec` behind.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections import Counter
from pathlib import Path

import cv2
from tqdm import tqdm

from magiccards.errors import DataError
from magiccards.files import temporary_name, write_text_atomic, writing

from .encode import Encoded, EncodeOptions, encode
from .labels import detection_label, lst_line
from .crops import CROP_RULE_FILE
from .crops import RULE as CROP_RULE
from .load import Dataset, as_crops, as_one_class, load
from .recordio_writer import IndexedRecordWriter, pack_image_record
from .samples import Sample, check_class_names, write_classes
from .split import split
from .workers import pool as workers_pool

SPLITS = ("train", "validation")


@dataclasses.dataclass
class PackResult:
    out_dir: Path
    task: str
    classes: list[str]
    images: dict[str, int]  # split -> images written
    counts: dict[str, dict[str, int]]  # split -> class name -> images (classification) or objects (detection)
    problems: dict[str, int]
    skipped: int  # image files found in the input but not packed
    seconds: float


class _SplitWriter:
    """One split's .lst/.rec/.idx, written under temporary names."""

    def __init__(self, out_dir: Path, name: str):
        self.final = {ext: out_dir / f"{name}.{ext}" for ext in ("rec", "idx", "lst")}
        self.tmp = {ext: temporary_name(path) for ext, path in self.final.items()}
        self.record = IndexedRecordWriter(self.tmp["idx"], self.tmp["rec"])
        self.lst = open(self.tmp["lst"], "w")
        self.count = 0
        self.per_class: Counter = Counter()

    def write(self, sample: Sample, enc: Encoded) -> None:
        i = self.count
        if enc.boxes is None:
            label = float(sample.label)
            self.lst.write(lst_line(i, sample.label, sample.rel))
            self.per_class[sample.label] += 1
        else:
            label = detection_label(enc.boxes, *enc.size)
            self.lst.write(lst_line(i, detection_label(enc.boxes, *enc.source_size), sample.rel))
            self.per_class.update(int(c) for c in enc.boxes[:, 0])
        self.record.write_idx(i, pack_image_record(label, i, enc.data))
        self.count += 1

    def close(self) -> None:
        self.record.close()
        self.lst.close()

    def commit(self) -> None:
        for ext, tmp in self.tmp.items():
            os.replace(tmp, self.final[ext])

    def discard(self) -> None:
        try:
            self.close()
        except OSError:
            pass  # a full disk cannot take the buffered rest either; the files go anyway
        for tmp in self.tmp.values():
            tmp.unlink(missing_ok=True)


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already


def _encode_job(job: tuple[Sample, EncodeOptions]) -> Encoded:
    return encode(*job)


def pack(input_path: Path, out_dir: Path, *, fmt: str = "auto", images: Path | None = None,
         classes: list[str] | Path | None = None, val_fraction: float = 0.2, seed: int = 0,
         resize: int | None = None, quality: int = 95, pass_through: bool = False,
         workers: int | None = None, one_class: str | None = None, crops: bool = False, progress: bool = True,
         log=print) -> PackResult:
    """Pack a dataset into RecordIO splits in `out_dir`; see the module docstring for the files."""
    if not 0 <= val_fraction < 1:
        raise DataError(f"--val-fraction must be in [0, 1); got {val_fraction}")
    if not 1 <= quality <= 100:
        raise DataError(f"--quality must be between 1 and 100; got {quality}")
    if workers is not None and workers < 1:
        raise DataError(f"--workers must be at least 1; got {workers}")
    if resize is not None and resize < 8:
        raise DataError(f"--resize is the shorter side in pixels and must be at least 8; got {resize}")
    started = time.perf_counter()
    beside = Path(input_path) / "classes.txt"
    if classes is None and Path(input_path).is_dir() and beside.is_file():
        classes = beside  # the dataset's own class order (synth writes one); --classes overrides it
        log(f"class names and order from {beside}")
    dataset = load(Path(input_path), fmt, images, classes, exclude=Path(out_dir))
    if one_class:
        check_class_names([one_class], "--one-class")
        log(f"every object of the {len(dataset.classes)} class(es) packed as class {one_class!r}")
        dataset = as_one_class(dataset, one_class)
    log(f"{dataset.task}: {len(dataset.samples)} image(s), {len(dataset.classes)} class(es) in {dataset.root}")
    train, val = split(dataset.samples, val_fraction, seed)
    if val_fraction > 0 and not val:
        raise DataError(f"{len(dataset.samples)} image(s) are too few to hold out {val_fraction:.0%} for validation; "
                        "add images or pass --val-fraction 0")
    if crops:
        if dataset.task != "detection":
            raise DataError("--crops cuts the boxes of a detection dataset into classification images; "
                            f"{dataset.root} holds class folders, which pack as they are")
        train, val = as_crops(train), as_crops(val)
        dataset = dataclasses.replace(dataset, task="classification")
        log(f"classification of the boxes: {len(train)} crop(s) to train, {len(val)} to validate (the photos split "
            "first, so no photo gives crops to both)")
    out_dir = Path(out_dir)
    with writing(f"the pack output in {out_dir}"):  # a full disk or an unwritable folder: one clear line
        result = _write_pack(dataset, train, val, out_dir, EncodeOptions(resize, quality, pass_through), workers,
                             progress, started)
        if crops:  # training records the rule in the classifier's model card; `combine` checks it
            write_text_atomic(out_dir / CROP_RULE_FILE, json.dumps(CROP_RULE, indent=1))
        else:
            (out_dir / CROP_RULE_FILE).unlink(missing_ok=True)
        return result


def _write_pack(dataset, train, val, out_dir: Path, options: EncodeOptions, workers, progress, started) -> PackResult:
    """Encode and write the splits under temporary names, rename them at the end, write the report."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create output folder {out_dir}: {e.strerror or e}") from None
    jobs = [("train", s) for s in train] + [("validation", s) for s in val]
    writers: dict[str, _SplitWriter] = {}
    try:
        with _encoded(jobs, options, workers) as results:
            writers = {name: _SplitWriter(out_dir, name) for name in SPLITS if name == "train" or val}
            _write_all(jobs, results, writers, dataset, progress)
        for w in writers.values():
            w.close()
        empty = [name for name, w in writers.items() if w.count == 0]
        if empty:
            raise DataError(f"no image of the {' and '.join(empty)} split could be packed; "
                            f"first problem: {dataset.problems.items[0] if len(dataset.problems) else 'none'}")
    except BaseException:
        for w in writers.values():
            w.discard()
        raise
    for w in writers.values():
        w.commit()
    for name in SPLITS:
        if name not in writers:  # a split of an earlier pack into this folder must not outlive it
            for ext in ("rec", "idx", "lst"):
                (out_dir / f"{name}.{ext}").unlink(missing_ok=True)
    write_classes(out_dir / "classes.txt", dataset.classes)
    result = PackResult(
        out_dir=out_dir, task=dataset.task, classes=dataset.classes,
        images={n: w.count for n, w in writers.items()},
        counts={n: {dataset.classes[c]: k for c, k in sorted(w.per_class.items())} for n, w in writers.items()},
        problems=dataset.problems.counts(), skipped=dataset.problems.skipped_images(), seconds=time.perf_counter() - started)
    _write_report(result, dataset, out_dir)
    return result


@contextlib.contextmanager
def _encoded(jobs, options: EncodeOptions, workers: int | None):
    """Encoded results in job order, from a process pool (forked before anything heavy is imported)."""
    workers = max(1, workers or os.cpu_count() or 1)
    work = [(s, options) for _, s in jobs]
    if workers == 1:
        yield map(_encode_job, work)
        return
    with workers_pool(workers, initializer=_init_worker) as pool:
        yield pool.map(_encode_job, work, chunksize=8)


def _write_all(jobs, results, writers, dataset: Dataset, progress: bool) -> None:
    """Write each encoded image to its split; the others are in `dataset.problems`."""
    seen: dict[str, str] = {}
    with tqdm(total=len(jobs), unit="img", desc="pack", disable=not progress) as bar:
        for (split_name, sample), enc in zip(jobs, results):
            dataset.problems.extend(enc.problems)
            if enc.data is not None and enc.digest in seen:
                dataset.problems.add("duplicate image", sample.rel, f"same bytes as {seen[enc.digest]}; skipped", images=1)
                enc.data = None
            if enc.data is not None:
                seen[enc.digest] = sample.rel
                writers[split_name].write(sample, enc)
            bar.update()


def _write_report(result: PackResult, dataset: Dataset, out_dir: Path) -> None:
    report = {
        "task": result.task, "classes": result.classes, "counts": result.counts,
        "images": result.images, "skipped_images": result.skipped, "seconds": round(result.seconds, 3),
        "problem_counts": result.problems, "problems": dataset.problems.as_json(),
    }
    write_text_atomic(out_dir / "pack-report.json", json.dumps(report, indent=2))
