"""The job's data channels: which reader opens each (RecordIO, images + .lst, Pipe mode), and the class names."""
from __future__ import annotations

import json
from pathlib import Path

from magiccards.data.crops import CROP_RULE_FILE
from magiccards.data.samples import read_classes

from magiccards.errors import DataError, HyperparameterError

from . import readers
from .job import Job
from .pipe import open_pipe_channel
from .readers import ChannelData
from .reporting import say


def data_task(job: Job) -> str | None:
    """The task of the train channel's records, read from its first label (None in Pipe mode: the first
    pass tells, when it is opened)."""
    require_train(job)
    if "train" in job.pipe_channels:
        return None
    return readers.infer_task(job.channels["train_lst" if "train_lst" in job.channels else "train"])


def require_train(job: Job) -> None:
    if not (job.has_channel("train") or "train_lst" in job.channels):
        names = sorted(set(job.channels) | job.pipe_channels)
        raise DataError(f"the job has no train channel (channels: {', '.join(names) or 'none'}); "
                        "add a channel named 'train' holding the .rec from `magiccards pack`")


def open_split(job: Job, split: str, task: str | None, workdir: Path) -> ChannelData | None:
    """The `train` or `validation` data of the job, every label checked against `task`; None when absent.

    With `task` None (Pipe mode only) the task is the first record's."""
    if split in job.pipe_channels:
        return open_pipe_channel(job.data_dir, split, task, log=say)
    if f"{split}_lst" in job.channels:
        if split not in job.channels:
            raise DataError(f"channel {split}_lst needs the images in a channel named {split}")
        return readers.open_lst_channel(job.channels[split], job.channels[f"{split}_lst"], task)
    if split not in job.channels:
        return None
    return readers.open_channel(job.channels[split], task, workdir, log=say)


def class_names(job: Job, train: ChannelData, num_classes: int | None) -> list[str]:
    """The classes.txt shipped in a channel (or class0, class1, ...), checked against the data and num_classes."""
    classes = None
    for name in ("train", "train_lst", "validation", "classes"):
        if name in job.channels and job.channels[name].is_dir():
            found = sorted(job.channels[name].rglob("classes.txt"))
            if found:
                classes = read_classes(found[0])
                break
    top = max(train.class_counts) + 1 if train.class_counts else 0
    if classes is None:
        classes = [f"class{i}" for i in range(num_classes or top)]
    if num_classes is not None and num_classes != len(classes):
        raise HyperparameterError(f"num_classes={num_classes} does not match the {len(classes)} classes of the data "
                                  f"({', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''})")
    if top > len(classes):
        raise DataError(f"the records use class index {top - 1} but only {len(classes)} classes are known; "
                        "set num_classes or ship the classes.txt written by `magiccards pack`")
    return classes


def crop_rule(job: Job) -> dict | None:
    """The crop rule of `pack --crops` records (its crop-rule.json in the train channel), None for whole images.
    The model card keeps it: a two-stage model must cut its crops by the rule its classifier learnt from."""
    for name in ("train", "train_lst", "classes"):
        if name in job.channels and job.channels[name].is_dir():
            for found in sorted(job.channels[name].rglob(CROP_RULE_FILE)):
                try:
                    rule = json.loads(found.read_text())
                except (OSError, UnicodeDecodeError, ValueError):
                    raise DataError(f"{found} cannot be read as JSON: pack the data again") from None
                return rule if isinstance(rule, dict) else None
    return None
