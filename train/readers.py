"""Training data from SageMaker channels (File mode): RecordIO (`.rec` + `.idx`) or images + `.lst`.

`open_channel` returns a gluon Dataset of (HWC uint8 image NDArray, label) where the label is the class
index (classification) or an (N, 5) array of xmin, ymin, xmax, ymax, class in pixels (detection),
the layouts GluonCV's transforms expect. Every label is checked once up front, so a bad file fails
at the start with a clear message instead of deep inside a data-loader worker.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
from gluoncv.data import RecordFileDetection
from gluoncv.data.recordio.detection import _transform_label
from magiccards.data.labels import parse_detection_label, task_of_label
from magiccards.data.recordio_reader import read_index, read_records
from tqdm import tqdm

from magiccards.errors import DataError


@dataclasses.dataclass
class ChannelData:
    dataset: mx.gluon.data.Dataset
    task: str
    class_counts: Counter  # class index -> images (classification) or objects (detection)
    source: str
    left_out: int = 0  # detection records without any object (GluonCV's SSD cannot take them)
    digest: str = ""  # sha256 of the records (or .lst rows and image sizes): what a checkpoint belongs to

    def begin_pass(self) -> None:
        """Called before each pass over the data; File-mode data is already all there (Pipe mode: pipe.py)."""


class _Concat(mx.gluon.data.Dataset):
    def __init__(self, parts):
        self._parts = parts
        self._ends = np.cumsum([len(p) for p in parts])

    def __len__(self):
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, idx):
        part = int(np.searchsorted(self._ends, idx, side="right"))
        start = int(self._ends[part - 1]) if part else 0
        return self._parts[part][idx - start]


def record_files(channel: Path) -> list[Path]:
    return sorted(p for p in Path(channel).rglob("*.rec") if p.is_file())


def raw_records(path: Path, name: str | None = None):
    """Every record of a .rec file or FIFO, read sequentially (no .idx); DataError when it is corrupt."""
    reader = mx.recordio.MXRecordIO(str(path), "r")
    try:
        while True:
            try:
                item = reader.read()
            except mx.base.MXNetError as e:
                reason = str(e).strip().splitlines()[-1].replace("MXNetError: ", "")
                raise DataError(f"{name or path} is corrupt or not a RecordIO file ({reason})") from None
            if item is None:
                return
            yield item
    finally:
        reader.close()


def unpack_record(record: bytes) -> tuple[int, np.ndarray, bytes]:
    """(flag, label array, image bytes) of an image record."""
    header, image = mx.recordio.unpack(record)
    return header.flag, np.asarray(header.label, dtype=np.float32).ravel(), image


def decode(record: bytes, task: str):
    """(HWC uint8 image NDArray, label) of one image record, as every training dataset serves it."""
    header, img = mx.recordio.unpack(record)
    return _sample(img, header.label, task)


def _sample(image_bytes: bytes, label, task: str):
    img = mx.image.imdecode(image_bytes, 1)
    if task == "classification":
        return img, np.float32(np.asarray(label).ravel()[0])
    h, w, _ = img.shape
    return img, _transform_label(label, h, w)


def lists_no_object(label: np.ndarray) -> bool:
    """True for a detection label with a header and no object: im2rec writes these for images listed
    without boxes; GluonCV's readers and SSD targets need at least one box per image."""
    return label.size > 1 and label.size <= int(label[0])


def check_label(flag: int, label: np.ndarray, task: str, source: str, n: int, counts: Counter) -> None:
    """Raise DataError when record `n` does not carry a label of `task`; count its classes."""
    found = task_of_label(flag, label)
    if found != task:
        raise DataError(f"{source}: label width mismatch: record {n} carries a {label.size}-value "
                        f"{found} label but the task is {task}")
    if task == "classification":
        counts[int(label[0])] += 1
    else:
        counts.update(int(c) for c in parse_detection_label(label)[1][:, 0])


def infer_task(channel: Path) -> str:
    """The task of the records (or .lst rows) in a channel, from its first label."""
    recs = record_files(channel)
    if recs:
        for item in raw_records(recs[0], recs[0].name):
            return task_of_label(*unpack_record(item)[:2])
        raise DataError(f"{recs[0].name} in channel {Path(channel).name} holds no record")
    lsts = sorted(Path(channel).rglob("*.lst"))
    if lsts:
        row = lsts[0].read_text().splitlines()[0].split("\t")
        return "classification" if len(row) == 3 else "detection"
    raise DataError(f"channel {Path(channel).name} holds no .rec file (and no .lst file); "
                    "pack your images with `magiccards pack`")


def _index(rec: Path, offsets: list[int], workdir: Path, log) -> Path:
    """The .idx beside the .rec when it lists exactly the records read (`offsets`), else one built from
    them in `workdir` (channels may be read-only); a stale or garbage .idx is noted, not trusted."""
    idx = rec.with_suffix(".idx")
    if idx.is_file():
        try:
            if sorted(read_index(idx).values()) == offsets:
                return idx
            reason = "lists other records (an index of an earlier pack?)"
        except DataError as e:
            reason = str(e)
        log(f"note: {idx.name} does not match {rec.name} ({reason}); using an index built from the records instead")
    idx = Path(workdir) / f"{rec.stem}-{abs(hash(str(rec)))}.idx"
    idx.write_text("".join(f"{i}\t{pos}\n" for i, pos in enumerate(offsets)))
    return idx


# a channel in which more than this share of the records hold damaged images is refused
MAX_DAMAGED = 0.1


def _decodes(data: bytes) -> bool:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


class DamagedImages:
    """Finds the records whose image cannot be used: cut short (no end marker) or not decodable (a
    damaged header or Huffman table), decoding in threads, a chunk at a time. Decodes as training does
    (OpenCV), so an image that passes here decodes in training."""

    CHUNK = 256

    def __init__(self, threads: int | None = None):
        self._pool = ThreadPoolExecutor(threads or min(8, os.cpu_count() or 1))
        self._pending: list[tuple[int, bytes]] = []
        self.found: set[int] = set()

    def add(self, n: int, image: bytes) -> None:
        """Check the image of record number `n`."""
        if not whole_image(image):
            self.found.add(n)
            return
        self._pending.append((n, image))
        if len(self._pending) >= self.CHUNK:
            self._flush()

    def result(self) -> set[int]:
        """The numbers of the damaged records among those added."""
        self._flush()
        self._pool.shutdown()
        return self.found

    def _flush(self) -> None:
        images = [image for _, image in self._pending]
        for (n, _), usable in zip(self._pending, self._pool.map(_decodes, images)):
            if not usable:
                self.found.add(n)
        self._pending = []


def refuse_or_note_damaged(damaged: set[int], n: int, source: str, log) -> None:
    """Fail when more than MAX_DAMAGED of the `n` records of `source` are damaged, else say how many are
    left out."""
    if len(damaged) > MAX_DAMAGED * n:
        raise DataError(f"{len(damaged)} of the {n} records of {source} hold a damaged image (cut short or not "
                        "decodable); pack the images again")
    if damaged:
        log(f"note: {len(damaged)} record(s) of {source} hold a damaged image (cut short or not decodable) and are "
            f"left out (first: record {min(damaged)})")


def whole_image(data: bytes) -> bool:
    """False for JPEG or PNG bytes that are cut short (no end marker): a truncated or damaged record."""
    if data[:2] == b"\xff\xd8":
        return b"\xff\xd9" in data[-64:]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" in data[-64:]
    return len(data) > 0


class _SerialReads:
    """`_read(key)`: one record of the dataset's MXIndexedRecordIO, one thread at a time.

    MXNet's record reader keeps one file position and one buffer: loader threads reading at once got one
    another's records, "Invalid RecordIO File" errors and a corrupted heap (apache/mxnet#13945; measured:
    6 threads, 18,000 reads, 250 wrong records and 11,724 errors). The lock covers the read only; decoding
    and augmenting stay parallel. A loader process gets a pickled copy with a lock of its own.
    """

    def _read(self, key):
        with self._reading:
            return self._record.read_idx(key)

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_reading", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reading = threading.Lock()


class _IndexedRecordDetection(_SerialReads, RecordFileDetection):
    """The records of a .rec in file order, less those numbered in `leave_out`.

    The kept keys live on the dataset: a loader process gets a pickled copy, and unpickling the
    MXIndexedRecordIO re-reads every key of the .idx.
    """

    def __init__(self, rec: Path, idx: Path, leave_out: set[int]):
        mx.gluon.data.vision.ImageRecordDataset.__init__(self, str(rec))
        self._record = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "r")
        in_file_order = sorted(self._record.keys, key=self._record.idx.get)
        self._keys = [k for n, k in enumerate(in_file_order) if n not in leave_out]
        self._coord_normalized = True
        self._reading = threading.Lock()

    def __len__(self):
        return len(self._keys)

    def __getitem__(self, idx):
        return decode(self._read(self._keys[idx]), "detection")


class _IndexedRecordClassification(_SerialReads, mx.gluon.data.vision.ImageRecordDataset):
    """The records of a .rec in file order, less those numbered in `leave_out`."""

    def __init__(self, rec: Path, idx: Path, leave_out: set[int]):
        mx.gluon.data.RecordFileDataset.__init__(self, str(rec))
        self._record = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "r")
        self.idx_file = str(idx)
        self._flag, self._transform = 1, None
        in_file_order = sorted(self._record.keys, key=self._record.idx.get)
        self._keys = [k for n, k in enumerate(in_file_order) if n not in leave_out]
        self._reading = threading.Lock()

    def __len__(self):
        return len(self._keys)

    def __getitem__(self, idx):
        return decode(self._read(self._keys[idx]), "classification")


def open_channel(channel: Path, task: str, workdir: Path, progress: bool = True, log=print) -> ChannelData:
    """The dataset of a File-mode channel, with every label checked against `task`.

    Records whose image is cut short are left out and counted (the job fails when more than
    MAX_DAMAGED of them are); a .idx that does not match its .rec is replaced by one built here."""
    recs = record_files(channel)
    if not recs:
        raise DataError(f"channel {Path(channel).name} holds no .rec file; pack your images with `magiccards pack`")
    counts: Counter = Counter()
    parts, left_out, digest = [], 0, hashlib.sha256()
    for rec in recs:
        n, empty, check, offsets = 0, set(), DamagedImages(), []
        for item in tqdm(read_records(rec, rec.name, offsets), desc=f"check {rec.name}", unit="rec",
                         disable=None if progress else True):
            digest.update(item)
            flag, label, image = unpack_record(item)
            check_label(flag, label, task, rec.name, n, counts)
            if task == "detection" and lists_no_object(label):
                empty.add(n)
            check.add(n, image)
            n += 1
        offsets.pop()  # the position after the last record
        damaged = check.result()
        if n == 0:
            raise DataError(f"{rec.name} in channel {Path(channel).name} holds no record")
        refuse_or_note_damaged(damaged, n, rec.name, log)
        idx = _index(rec, offsets, workdir, log)
        parts.append(_IndexedRecordClassification(rec, idx, damaged) if task == "classification"
                     else _IndexedRecordDetection(rec, idx, empty | damaged))
        left_out += len(empty)
    data = ChannelData(parts[0] if len(parts) == 1 else _Concat(parts), task, counts,
                       ", ".join(r.name for r in recs), left_out, digest.hexdigest())
    return require_objects(data, Path(channel).name)


def require_objects(data: ChannelData, channel: str) -> ChannelData:
    """`data`, unless leaving out its records without objects left nothing."""
    if len(data.dataset) == 0:
        raise DataError(f"no record of channel {channel} lists an object ({data.left_out} image(s) without boxes); "
                        "detection needs at least one box per image")
    return data


def open_lst_channel(images: Path, lst_channel: Path, task: str) -> ChannelData:
    """Images plus an im2rec .lst (channels `train` + `train_lst`), like the built-in algorithms accept.

    Every row is checked up front (label of `task`, image present in the image channel)."""
    lsts = sorted(Path(lst_channel).rglob("*.lst"))
    if not lsts:
        raise DataError(f"channel {Path(lst_channel).name} holds no .lst file")
    parts, counts, left_out, digest = [], Counter(), 0, hashlib.sha256()
    for lst in lsts:
        rows = []
        digest.update(lst.read_bytes())
        for n, line in enumerate(_lst_lines(lst)):
            label, rel = _lst_row(line, lst.name, n)
            check_label(0 if label.size == 1 else int(label[0]), label, task, lst.name, n, counts)
            if task == "detection" and lists_no_object(label):
                left_out += 1
            else:
                rows.append((label, rel))
        missing = [rel for _, rel in rows if not (Path(images) / rel).is_file()]
        if missing:
            raise DataError(f"{len(missing)} image(s) listed in {lst.name} are not in channel {Path(images).name} "
                            f"(first: {missing[0]})")
        digest.update(" ".join(str((Path(images) / rel).stat().st_size) for _, rel in rows).encode())
        parts.append(_ListedImages(Path(images), rows, task))
    data = ChannelData(parts[0] if len(parts) == 1 else _Concat(parts), task, counts, ", ".join(p.name for p in lsts),
                       left_out, digest.hexdigest())
    return require_objects(data, Path(lst_channel).name)


def _lst_lines(lst: Path) -> list[str]:
    try:
        return lst.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{lst.name} is not a text file (byte {e.start} is not UTF-8); write it with "
                        "`magiccards pack` or im2rec") from None


def _lst_row(line: str, name: str, n: int) -> tuple[np.ndarray, str]:
    """(label values, image path) of row `n` of an im2rec .lst: index, label(s), path, tab-separated; the
    path stays inside the image channel."""
    fields = line.split("\t")
    shape = f"{name}: row {n + 1} is not 'index<TAB>label(s)<TAB>path'"
    if len(fields) < 3 or not fields[-1].strip():
        raise DataError(shape)
    try:
        label = np.array(fields[1:-1], dtype=np.float32)
    except ValueError:
        raise DataError(shape) from None
    if not np.isfinite(label).all():
        raise DataError(f"{name}: row {n + 1} holds a label that is not a finite number")
    rel = fields[-1]
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise DataError(f"{name}: row {n + 1} names {rel!r}, which is not a path inside the image channel")
    return label, rel


class _ListedImages(mx.gluon.data.Dataset):
    """The images of .lst rows (label values, path relative to the image channel), decoded like records."""

    def __init__(self, root: Path, rows: list[tuple[np.ndarray, str]], task: str):
        self._root, self._rows, self._task = root, rows, task

    def __len__(self):
        return len(self._rows)

    def __getitem__(self, idx):
        label, rel = self._rows[idx]
        return _sample((self._root / rel).read_bytes(), label, self._task)
