"""`magiccards export`: a model directory's network for an edge runtime, checked against MXNet.

    export(model_dir, "openvino", "int8")
      1. exports/ left from another model (its parameters' digest differs) is cleared first;
      2. the FP32 ONNX file (graph.py, onnx_export.py): the route to every runtime;
      3. the asked-for format and precision: ONNX FP16 / INT8, OpenVINO IR FP32 / FP16 / INT8
         (INT8: NNCF calibrated on the model's validation images or `--calibration`); a detector's
         heads then end in box decoding and NMS (onnx_tail.py), in float32, so the runtime answers
         ids, scores and boxes itself;
      4. the parity check on real validation images (parity.py), stored in exports/parity.json and
         printed; an export that misses its gate is kept, marked failed, and never picked by `auto`.

Nothing half-written is ever beside a record: each export is written into a hidden staging folder and
moved in whole (Ctrl-C and SIGTERM held for the swap), and its parity record, written last, names the
SHA-256 of every file it judged (the export's, the symbol, the parameters, the classes). A failed or
interrupted re-export leaves the previous export and its record as they were; a record whose files
changed since is ignored by `serve`, `predict` and `greengrass` (they fall back to what still matches).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from magiccards.files import atomic_path, signals_held, write_text_atomic, writing
from magiccards.model_dir import EXPORT_FORMATS, PARITY, PRECISIONS, ModelDir, TwoStageDir, open_model
from magiccards.telemetry import openvino

from . import onnx_export, openvino_export, parity
from .graph import ExportError, load_graph
from .validation import find_records, read_samples

SOURCE = "source.json"
PARITY_IMAGES = 200


def _open(path: Path) -> ModelDir | TwoStageDir:
    path = Path(path)
    if path.is_file():
        raise ExportError(f"{path} is an archive: exports are written into the model directory, so unpack it first "
                          f"(mkdir model && tar -xzf {path} -C model) and export the folder")
    return open_model(path)


def refresh_if_foreign(model: ModelDir, log) -> None:
    """Clear exports/ when it was written for other parameters (or by no known export)."""
    exports = model.exports_dir
    if not exports.is_dir() or not any(exports.iterdir()):
        return
    try:
        recorded = json.loads((exports / SOURCE).read_text()).get("params_sha256")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded == model.params_digest():
        return
    log(f"{exports} held exports of other parameters (the model was retrained or copied over): cleared them")
    shutil.rmtree(exports)


def _import_runtimes(precision: str) -> None:
    """Import the libraries an export uses with Ctrl-C held back: some swallow a KeyboardInterrupt met while
    they import and go on (a traceback, then a finished export); held, it arrives once they are loaded."""
    with signals_held():
        import gluoncv.utils.metrics  # noqa: F401 - the parity check's mAP
        import mxnet  # noqa: F401
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        openvino()
        if precision == "int8":
            import nncf  # noqa: F401


def _record(model: ModelDir, entry: dict) -> list[dict]:
    records = [r for r in model.parity_records()
               if (r.get("format"), r.get("precision")) != (entry["format"], entry["precision"])]
    records.append(entry)
    records.sort(key=lambda r: (str(r.get("format")), PRECISIONS.index(r["precision"])
                                if r.get("precision") in PRECISIONS else 9))
    write_text_atomic(model.exports_dir / PARITY, json.dumps(records, indent=1))
    return records


def _write(model: ModelDir, export_format: str, precision: str, calibration, log) -> Path:
    """Write one export. INT8 is quantised once, on the ONNX graph (NNCF's ONNX backend: the NNCF that
    installs beside MXNet's NumPy predates OpenVINO 2026's API); OpenVINO then reads the quantised
    graph's QuantizeLinear/DequantizeLinear pairs and runs those layers in INT8."""
    final = model.export_file(export_format, precision)
    graph = load_graph(model)
    scratch = Path(tempfile.mkdtemp(prefix="magiccards-export-"))
    try:
        with writing(f"the export {final.parent}"), atomic_path(final.parent) as staging:
            staging.mkdir()
            target = staging / final.name
            onnx_file = target if (export_format, precision) == ("onnx", "fp32") else scratch / "model.onnx"
            onnx_export.write_onnx(model, graph, onnx_file)
            if precision == "int8":
                from .quantize import quantize_onnx

                samples = calibration()
                log(f"calibrating INT8 on {len(samples)} images")
                quantized = target if export_format == "onnx" else scratch / "model-int8.onnx"
                quantize_onnx(onnx_file, quantized, model, samples)
                onnx_file = quantized
            if (export_format, precision) == ("onnx", "fp16"):
                onnx_export.to_fp16(onnx_file, target)
                onnx_file = target
            if model.task == "detection":  # the tail in float32 after the heads, whatever their precision
                onnx_export.append_tail(model, onnx_file, for_openvino=export_format == "openvino")
            if export_format == "openvino":
                openvino_export.save_ir(openvino_export.read_onnx(onnx_file), target, fp16=precision == "fp16")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def export(model_path: Path, export_format: str, precision: str = "fp32", validation: Path | None = None,
           calibration: Path | None = None, images: int = PARITY_IMAGES, classifier_validation: Path | None = None,
           log=print) -> dict:
    """Export the model directory at `model_path` and check it; returns its parity record. A two-stage model's
    stages are exported and checked each, then the whole (`export_two_stage`)."""
    if export_format not in EXPORT_FORMATS:
        raise ExportError(f"format {export_format!r} is not one of {', '.join(EXPORT_FORMATS)}")
    if precision not in PRECISIONS:
        raise ExportError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if images < 1:
        raise ExportError(f"--images must be at least 1 (got {images})")
    model = _open(model_path)
    if isinstance(model, TwoStageDir):
        return export_two_stage(model, export_format, precision, validation, calibration, images,
                                classifier_validation, log)
    _import_runtimes(precision)
    # find every input before the work starts: a missing calibration set is one line, not a lost minute
    validation_rec = find_records(model, validation, "the parity check (--validation REC)")
    calibration_rec = None
    if precision == "int8":
        calibration_rec = find_records(model, calibration or validation,
                                       "INT8 calibration (--calibration REC, images like the ones it will see)")
    refresh_if_foreign(model, log)
    model.exports_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(model.exports_dir / SOURCE, json.dumps({"params_sha256": model.params_digest()}))
    from .quantize import CALIBRATION_IMAGES

    target = _write(model, export_format, precision,
                    lambda: read_samples(calibration_rec, model.task, CALIBRATION_IMAGES), log)
    log(f"wrote {target}")
    entry = check(model, export_format, precision, read_samples(validation_rec, model.task, images))
    entry["validation"] = str(validation_rec)
    if calibration_rec is not None:
        entry["calibration"] = str(calibration_rec)
    _record(model, entry)
    log(parity.describe(entry))
    return entry


def export_two_stage(model: TwoStageDir, export_format: str, precision: str, validation: Path | None,
                     calibration: Path | None, images: int, classifier_validation: Path | None, log=print) -> dict:
    """Export both stages of a two-stage model (each checked on its own validation records, as any model
    directory), then check the whole on the detector's validation photos (mAP@0.5 of the two-stage model
    on MXNet and on the exports). Returns the end-to-end record, stored in MODEL/parity.json."""
    records = {}
    for stage, given, cal in (("detector", validation, calibration), ("classifier", classifier_validation, None)):
        network = getattr(model, stage)
        rec = given or model.validation_records(stage)
        if rec is None:
            flag = "--validation" if stage == "detector" else "--classifier-validation"
            raise ExportError(f"the {stage} of {model.path} was not combined from a job folder with its validation "
                              f"records: pass {flag} REC (the .rec it was validated on)")
        log(f"{stage}:")
        records[stage] = export(network.path, export_format, precision, validation=rec,
                                calibration=cal or rec, images=images, log=log)
    detector_rec = Path(validation or model.validation_records("detector"))
    if not set(model.detector.classes) <= set(model.classes):
        entry = {"format": export_format, "precision": precision, "passed": None,
                 "note": "the detector's classes are not the model's (a one-class detector?): the end-to-end check "
                         "needs photos boxed with the classifier's classes, which its records are not"}
    else:
        from magiccards.serve.loader import load

        runtime = EXPORT_FORMATS[export_format][0]
        samples = _in_classes(read_samples(detector_rec, "detection", images), model.detector.classes, model.classes)
        with load(model, backend="mxnet") as reference, load(model, backend=f"{runtime}:{precision}") as exported:
            entry = {"format": export_format, "precision": precision, "runtime": runtime,
                     "ran_at": exported.detector.backend.ran_at, "validation": str(detector_rec)}
            entry.update(parity.compare(reference, exported, samples, precision))
    entry["stages"] = {stage: {"passed": r["passed"], "file": f"{stage}/exports/{r['file']}"}
                       for stage, r in records.items()}
    entry["passed"] = entry["passed"] is not False and all(r["passed"] for r in records.values())
    kept = [r for r in _two_stage_records(model) if (r.get("format"), r.get("precision")) != (export_format, precision)]
    write_text_atomic(model.parity_file, json.dumps(kept + [entry], indent=1))
    log("end to end: " + (parity.describe(entry) if "map_mxnet" in entry else entry["note"]))
    return entry


def _in_classes(samples: list, old: tuple[str, ...], new: tuple[str, ...]) -> list:
    """Detection samples whose class indices of `old` names are those of the same names in `new`."""
    import dataclasses

    import numpy as np

    index = np.array([new.index(name) for name in old], np.float32)
    renamed = []
    for sample in samples:
        objects = sample.objects.copy()
        objects[:, 0] = index[objects[:, 0].astype(int)]
        renamed.append(dataclasses.replace(sample, objects=objects))
    return renamed


def _two_stage_records(model: TwoStageDir) -> list[dict]:
    try:
        records = json.loads(model.parity_file.read_text())
    except (OSError, ValueError):
        return []
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []


def check(model: ModelDir, export_format: str, precision: str, samples) -> dict:
    """The parity record of one export of `model` on `samples` (not yet stored)."""
    from magiccards.serve.predictor import Predictor

    runtime = EXPORT_FORMATS[export_format][0]
    reference = Predictor(model, backend="mxnet")
    exported = Predictor(model, backend=f"{runtime}:{precision}")
    entry = {"format": export_format, "precision": precision, "runtime": runtime,
             "file": str(model.export_file(export_format, precision).relative_to(model.exports_dir)),
             "ran_at": exported.backend.ran_at, "params_sha256": model.params_digest(),
             "files_sha256": model.export_digests(export_format, precision)}
    entry.update(parity.compare(reference, exported, samples, precision))
    return entry
