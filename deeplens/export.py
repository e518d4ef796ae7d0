"""`magiccards export`: a model directory's network for an edge runtime, checked against MXNet.

    export(model_dir, "openvino", "int8")
      1. exports/ left from another model (its parameters' digest differs) is cleared first;
      2. the FP32 ONNX file (graph.py, onnx_export.py): the route to every runtime;
      3. the asked-for format and precision: ONNX FP16 / INT8, OpenVINO IR FP32 / FP16 / INT8
         (INT8: NNCF calibrated on the model's validation images or `--calibration`);
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
from magiccards.model_dir import EXPORT_FORMATS, PARITY, PRECISIONS, ModelDir, open_model_dir
from magiccards.telemetry import openvino

from . import onnx_export, openvino_export, parity
from .graph import ExportError, load_graph
from .validation import find_records, read_samples

SOURCE = "source.json"
PARITY_IMAGES = 200


def _open(path: Path) -> ModelDir:
    path = Path(path)
    if path.is_file():
        raise ExportError(f"{path} is an archive: exports are written into the model directory, so unpack it first "
                          f"(mkdir model && tar -xzf {path} -C model) and export the folder")
    return open_model_dir(path)


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
            elif export_format == "openvino":
                openvino_export.save_ir(openvino_export.read_onnx(onnx_file), target, fp16=precision == "fp16")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def export(model_path: Path, export_format: str, precision: str = "fp32", validation: Path | None = None,
           calibration: Path | None = None, images: int = PARITY_IMAGES, log=print) -> dict:
    """Export the model directory at `model_path` and check it; returns its parity record."""
    if export_format not in EXPORT_FORMATS:
        raise ExportError(f"format {export_format!r} is not one of {', '.join(EXPORT_FORMATS)}")
    if precision not in PRECISIONS:
        raise ExportError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if images < 1:
        raise ExportError(f"--images must be at least 1 (got {images})")
    model = _open(model_path)
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
