"""Annotation formats read by `magiccards pack`, registered once.

`FORMATS` is the one list of layouts: the CLI's `--format` choices, layout detection (`load.detect_format`
tries them in this order) and `load` (which reader reads what) all use it.
"""
from __future__ import annotations

import dataclasses
from types import ModuleType

from . import class_folders, coco, csv_boxes, ground_truth, sagemaker_json, voc


@dataclasses.dataclass(frozen=True)
class Format:
    reader: ModuleType  # has looks_like(path); detection formats also read(path, images, problems), image_dir(path)
    reads: str  # what the input is, for messages: "a folder" or "a COCO .json file"
    task: str  # "classification", "detection", or "either" (a Ground Truth manifest says which)

    @property
    def reads_a_file(self) -> bool:
        return self.reads != "a folder"


# in the order layout detection tries them
FORMATS: dict[str, Format] = {
    "manifest": Format(ground_truth, "a Ground Truth .manifest file", "either"),
    "coco": Format(coco, "a COCO .json file", "detection"),
    "csv": Format(csv_boxes, "a .csv file of boxes", "detection"),
    "voc": Format(voc, "a folder", "detection"),
    "sagemaker": Format(sagemaker_json, "a folder", "detection"),
    "folders": Format(class_folders, "a folder", "classification"),
}
CHOICES = ("auto", "folders", "voc", "coco", "sagemaker", "manifest", "csv")  # as the CLI lists them
assert set(CHOICES) == {"auto", *FORMATS}
