"""Pipe mode: each channel arrives as FIFOs `<channel>_0`, `<channel>_1`, ... (one per pass).

SageMaker (or `container/pipe_feeder.py` locally) creates the next FIFO after the previous one was
read to its end. A pass is read sequentially with `mx.recordio.MXRecordIO` (RecordIO passes through
unwrapped) and held in memory as raw records, which then serve exactly like File mode's indexed
records: same order, same decoding, so training gives the same result in both modes.
"""
from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path

import mxnet as mx
from magiccards.data.labels import task_of_label

from magiccards.errors import DataError

from .readers import (
    ChannelData,
    DamagedImages,
    check_label,
    decode,
    lists_no_object,
    raw_records,
    refuse_or_note_damaged,
    require_objects,
    unpack_record,
)

WAIT_SECONDS = 600


def _usable(records: list[bytes], task: str, source: str, log) -> tuple[list[bytes], int]:
    """The records that training can use, and how many detection records list no object: those without
    objects (as File mode) and those whose image is damaged (counted, refused beyond MAX_DAMAGED) are
    left out."""
    check = DamagedImages()
    no_object = set()
    for n, record in enumerate(records):
        _, label, image = unpack_record(record)
        if task == "detection" and lists_no_object(label):
            no_object.add(n)
        check.add(n, image)
    damaged = check.result()
    refuse_or_note_damaged(damaged, len(records), source, log)
    return [r for n, r in enumerate(records) if n not in no_object | damaged], len(no_object)


class PipeChannel:
    """Reads successive passes of one Pipe-mode channel."""

    def __init__(self, data_dir: Path, name: str, wait_seconds: float = WAIT_SECONDS):
        self.data_dir, self.name, self.wait_seconds = Path(data_dir), name, wait_seconds
        self.passes = 0  # passes read
        self.used = 0  # passes begun (PipeChannelData.begin_pass)

    def read_pass(self) -> list[bytes]:
        """The raw records of the next FIFO, read to EOF."""
        path = self.data_dir / f"{self.name}_{self.passes}"
        deadline = time.monotonic() + self.wait_seconds
        while not path.exists():
            if time.monotonic() > deadline:
                raise DataError(f"Pipe mode: {path} did not appear within {self.wait_seconds:.0f} s")
            time.sleep(0.05)
        records = list(raw_records(path, f"Pipe-mode channel {self.name}"))
        self.passes += 1
        return records


class RecordListDataset(mx.gluon.data.Dataset):
    """Raw image records in memory, decoded like File mode's datasets; `records` is replaced each pass."""

    def __init__(self, records: list[bytes], task: str):
        self.records, self.task = records, task

    def __len__(self):
        return len(self.records)

    def __getitem__(self, idx):
        return decode(self.records[idx], self.task)


class PipeChannelData(ChannelData):
    """A Pipe-mode channel: each pass but the first (read when the channel was opened) reads the next FIFO."""

    def __init__(self, pipe: PipeChannel, *args, log=print, **kwargs):
        super().__init__(*args, **kwargs)
        self.pipe, self.log = pipe, log

    def begin_pass(self) -> None:
        if self.pipe.passes > self.pipe.used:
            self.pipe.used += 1  # the pass read when the channel was opened
            return
        source = f"Pipe-mode channel {self.pipe.name}, pass {self.pipe.passes + 1}"
        self.dataset.records = _usable(self.pipe.read_pass(), self.dataset.task, source, self.log)[0]
        self.pipe.used += 1


def open_pipe_channel(data_dir: Path, name: str, task: str | None, log=print) -> PipeChannelData:
    """The first pass of a Pipe-mode channel as a dataset, with every label checked.

    With `task` None the task is taken from the first record.
    """
    pipe = PipeChannel(data_dir, name)
    records = pipe.read_pass()
    if not records:
        raise DataError(f"Pipe mode: channel {name} delivered no record")
    if task is None:
        task = task_of_label(*unpack_record(records[0])[:2])
    counts: Counter = Counter()
    digest = hashlib.sha256()
    for n, item in enumerate(records):
        flag, label, _ = unpack_record(item)
        check_label(flag, label, task, f"{name} (pipe)", n, counts)
        digest.update(item)
    usable, no_object = _usable(records, task, f"Pipe-mode channel {name}", log)
    data = PipeChannelData(pipe, RecordListDataset(usable, task), task, counts, f"{name} (Pipe mode)",
                           no_object, digest.hexdigest(), log=log)
    return require_objects(data, name)
