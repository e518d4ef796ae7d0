"""`magiccards combine DETECTOR CLASSIFIER --out MODEL`: one two-stage model from a detector and a classifier.

Each stage may be a model directory, its `model.tar.gz`, or a training job's output folder. What cannot
work together is refused in one line before anything is written: a stage that is itself two-stage, a stage
of the wrong task, a classifier whose input is not square (a crop is), a classifier whose model card says
it learnt from crops cut by another rule than data/crops.py's, and exports that one stage has and the other
lacks (a backend such as `openvino:int8` runs both stages). The result is written whole or not at all: a
folder (the model directory layout of magiccards/model_dir.py) or, for an --out ending in .tar.gz, the
archive SageMaker hosting takes.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from magiccards.data.crops import RULE as CROP_RULE
from magiccards.errors import UserError
from magiccards.files import atomic_path, writing
from magiccards.model_dir import (ARCHIVE, CLASSIFIER_DIR, DETECTOR_DIR, EXPORT_FORMATS, PRECISIONS, TRAINING_STATE,
                                  TWO_STAGE_DEFAULTS, ModelDir, TwoStageDir, check_two_stage_settings, open_model,
                                  write_two_stage_card)


def combine(detector: Path, classifier: Path, out: Path, settings: dict | None = None, log=print) -> TwoStageDir:
    """Write the two-stage model of `detector` and `classifier` to `out` (a folder, or a .tar.gz archive)."""
    settings = {**TWO_STAGE_DEFAULTS, **(settings or {})}
    out = Path(out)
    archive = out.name.endswith((".tar.gz", ".tgz"))
    if not archive and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} already exists and is not an empty folder: give a new folder (or a .tar.gz)")
    with tempfile.TemporaryDirectory(prefix="magiccards-combine-") as scratch:
        scratch = Path(scratch)
        found = open_stage(detector, "detector", "detection", scratch / "detector")
        named = open_stage(classifier, "classifier", "classification", scratch / "classifier")
        for stage in (found, named):
            if out.resolve().is_relative_to(stage.path.resolve()):
                raise UserError(f"--out {out} lies inside the model directory {stage.path}, which it copies: "
                                "give a folder outside it")
        check_compatible(found, named, log)
        problem = check_two_stage_settings(settings["nms_iou"], settings["classes_per_box"], settings["max_boxes"],
                                           settings["box_threshold"], len(named.classes))
        if problem:
            raise UserError(problem)
        with writing(f"the two-stage model {out}"):
            if archive:
                folder = scratch / "model"
                _assemble(found, named, folder, settings)
                from container.job import tar_folder

                tar_folder(folder, out)
                return open_model(out, scratch / "check")
            with atomic_path(out) as tmp:
                _assemble(found, named, tmp, settings)
            return open_model(out)


def open_stage(path: Path, role: str, task: str, workdir: Path) -> ModelDir:
    """One stage: a single network of `task`."""
    model = open_model(Path(path), workdir)
    if isinstance(model, TwoStageDir):
        raise UserError(f"the {role} {path} is itself a two-stage model: give a {task} model directory")
    if model.task != task:
        raise UserError(f"the {role} {path} is a {model.task} model; a two-stage model's {role} is a {task} model")
    return model


def present_exports(model: ModelDir) -> set[str]:
    """`format-precision` of each export the model directory holds."""
    return {f"{fmt}-{p}" for fmt in EXPORT_FORMATS for p in PRECISIONS if model.export_file(fmt, p).is_file()}


def check_compatible(detector: ModelDir, classifier: ModelDir, log=print) -> None:
    """Refuse a classifier that cannot name the detector's crops, and exports present in one stage only."""
    _, height, width = classifier.input_shape
    if height != width:
        raise UserError(f"the classifier {classifier.path} takes {width}x{height} images; a two-stage model gives it "
                        "square crops: train it on `pack --crops` output with a square image_shape")
    rule = classifier.card.get("dataset", {}).get("crops") if isinstance(classifier.card.get("dataset"), dict) else None
    if rule is None:
        log(f"note: the classifier's model card does not say it learnt from crops (`magiccards pack --crops`); it will "
            f"be given the square around each box ({CROP_RULE['margin']:.0%} margin)")
    elif rule != CROP_RULE:
        raise UserError(f"the classifier {classifier.path} learnt from crops cut by {rule}, not by this version's rule "
                        f"{CROP_RULE}: pack its data again with `magiccards pack --crops` and retrain it")
    ours, theirs = present_exports(detector), present_exports(classifier)
    if ours != theirs:
        only_detector, only_classifier = sorted(ours - theirs), sorted(theirs - ours)
        lines = ([f"the detector has {', '.join(only_detector)} and the classifier has not"] if only_detector else []) \
            + ([f"the classifier has {', '.join(only_classifier)} and the detector has not"] if only_classifier else [])
        raise UserError(f"mismatched exports: {'; '.join(lines)}. Export both stages in the same formats and "
                        "precisions (`magiccards export`), or neither")


def _assemble(detector: ModelDir, classifier: ModelDir, folder: Path, settings: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns(TRAINING_STATE, ARCHIVE, "*.tar.gz", ".*.tmp")  # what serving does not need
    shutil.copytree(detector.path, folder / DETECTOR_DIR, ignore=skip)
    shutil.copytree(classifier.path, folder / CLASSIFIER_DIR, ignore=skip)
    write_two_stage_card(folder, list(classifier.classes), settings,
                         validation={"detector": _validation_of(detector), "classifier": _validation_of(classifier)})
    open_model(folder)  # what was written opens as a two-stage model


def _validation_of(model: ModelDir) -> str | None:
    """The validation records of the job a stage came from, if it did: `export` of the two-stage model checks
    each stage, and the whole, on them."""
    from magiccards.deeplens.validation import job_validation_records

    found = job_validation_records(model)
    return str(found.resolve()) if found else None
