"""`magiccards deeplens check FILE.tar.gz`: the package through the real Intel Model Optimizer.

DeepLens's `mo.optimize` wraps the Model Optimizer's MXNet front end, which OpenVINO dropped after
2023.3. It lives in a venv of its own (`make .venv-mo`: openvino-dev 2023.3.0 with mxnet 1.9.1 and
numpy 1.23.5), found by $MAGICCARDS_MO (the `mo` executable) or as .venv-mo/bin/mo in the working
folder or beside this project. The check converts the package as the device would (FP32 and the FP16
DeepLens's GPU runs), runs each IR with OpenVINO, and compares it with the package's own graph in MXNet
on validation images: classification top-1 the same on >= 99 % and probabilities within 1e-3 (FP32);
detection mAP within 1 point and matched boxes within 1 % of the image. A two-stage package's two graphs
are checked each, on their own validation images.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from magiccards.telemetry import openvino, opt_out

from . import device_parity
from .device_graph import run_device
from .graph import ExportError
from .package import describe, load_package_graph, read_package, stage_manifests
from .validation import read_samples

VENV = ".venv-mo"
SETUP = (f"python3 -m venv {VENV} && {VENV}/bin/pip install openvino-dev==2023.3.0 mxnet==1.9.1 numpy==1.23.5 "
         f"(or `make {VENV}/.installed`)")
GATES = {"FP32": {"top1_agreement": 99.0, "max_probability_difference": 1e-3, "map_points_lost": 1.0,
                  "max_box_difference": 0.01},
         "FP16": {"top1_agreement": 99.0, "max_probability_difference": None, "map_points_lost": 1.0,
                  "max_box_difference": 0.01}}


def find_mo() -> Path | None:
    """The Model Optimizer executable of the MXNet-capable venv, or None."""
    given = os.environ.get("MAGICCARDS_MO")
    if given:
        return Path(given) if Path(given).is_file() else None
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = root / VENV / "bin" / "mo"
        if candidate.is_file():
            return candidate
    return None


def convert(mo: Path, folder: Path, value: dict, precision: str, out: Path) -> Path:
    """Run `mo --framework mxnet` on the package's checkpoint; returns the IR's .xml."""
    name, epoch = value["name"], int(value["epoch"])
    opt_out()  # the Model Optimizer reads the same consent file (magiccards/telemetry.py)
    command = [str(mo), "--framework", "mxnet", "--input_model", str(folder / f"{name}-{epoch:04d}.params"),
               "--input_shape", f"[1,3,{value['input_height']},{value['input_width']}]", "--output_dir", str(out),
               "--model_name", f"{name}-{precision.lower()}", f"--compress_to_fp16={precision == 'FP16'}"]
    done = subprocess.run(command, capture_output=True, text=True)
    xml = out / f"{name}-{precision.lower()}.xml"
    if done.returncode != 0 or not xml.is_file():
        lines = [line for line in (done.stdout + done.stderr).splitlines() if "ERROR" in line] or \
            (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise ExportError(f"the Model Optimizer could not convert the package ({precision}): "
                          + " | ".join(line.strip() for line in lines[:3]))
    return xml


def run_ir(xml: Path, batches: list[np.ndarray]) -> list[np.ndarray]:
    """The IR's output on each (1, 3, H, W) BGR batch, on OpenVINO's CPU plugin in f32."""
    ov = openvino()

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(xml)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return [np.array(request.infer({0: batch})[compiled.output(0)]) for batch in batches]


def compare(value: dict, reference: list[np.ndarray], got: list[np.ndarray], samples, precision: str) -> dict:
    gate = GATES[precision]
    if value["task"] == "classification":
        record = device_parity.compare_classification(np.concatenate(reference), np.concatenate(got).reshape(
            len(got), -1))
        passed = record["top1_agreement"] >= gate["top1_agreement"] and (
            gate["max_probability_difference"] is None
            or record["max_probability_difference"] <= gate["max_probability_difference"])
    else:
        classes = list(value["classes"])
        ref = [device_parity.detections(r[0], classes) for r in reference]
        ir = [device_parity.detections(g, classes, ir_rows=True) for g in got]
        record = device_parity.compare_detection(ref, ir, samples, len(classes))
        passed = device_parity.detection_passed(record, gate)
    return dict(record, precision=precision, images=len(samples), passed=bool(passed))


def check(archive: Path, validation: Path | None = None, images: int = 100, precisions=("FP32", "FP16"),
          classifier_validation: Path | None = None, log=print) -> list[dict]:
    """Convert each graph of the package with the Model Optimizer and compare each IR with MXNet on
    validation images (`validation`; a two-stage package's classifier on `classifier_validation`; by default
    the records the package's own parity check used); returns the records (each with its `stage`)."""
    mo = find_mo()
    if mo is None:
        raise ExportError(f"the Model Optimizer with its MXNet front end is not installed here; create its venv: {SETUP}")
    with tempfile.TemporaryDirectory(prefix="magiccards-mo-") as scratch:
        folder, value = read_package(Path(archive), Path(scratch) / "package")
        stages = stage_manifests(value)
        given = {None: validation, "detector": validation, "classifier": classifier_validation}
        recs = {stage: _validation(given[stage], sub, stage) for stage, sub in stages}  # all found before any work
        records = []
        for stage, sub in stages:
            device = load_package_graph(folder, sub)
            samples = read_samples(recs[stage], sub["task"], images)
            shape = (3, sub["input_height"], sub["input_width"])
            batches = [device_parity.device_input(s.image, sub["task"], shape) for s in samples]
            reference = [run_device(device, b) for b in batches]
            for precision in precisions:
                xml = convert(mo, folder, sub, precision, Path(scratch) / "ir")
                record = dict(compare(sub, reference, run_ir(xml, batches), samples, precision), stage=stage)
                log((f"{stage}: " if stage else "") + describe(
                    record, f"Model Optimizer {precision} IR on OpenVINO vs the package in MXNet"))
                records.append(record)
    return records


def _validation(given: Path | None, value: dict, stage: str | None) -> Path:
    """The .rec a graph is checked on: `given`, else the one its package's parity check used (if still here)."""
    flag = "--classifier-validation" if stage == "classifier" else "--validation"
    recorded = (value.get("parity") or {}).get("validation")
    path = Path(given) if given is not None else Path(recorded) if isinstance(recorded, str) else None
    if path is None or not path.is_file():
        what = f"{path} does not exist" if path is not None else "no validation records were given"
        raise ExportError(f"{what}: the check needs a .rec of the {stage or 'model'}'s validation images "
                          f"({flag} REC)")
    return path
