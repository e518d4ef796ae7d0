"""`magiccards deeplens package MODEL_DIR --out FILE.tar.gz`: the archive DeepLens imports.

At the archive's root: `<name>-symbol.json` and `<name>-<epoch>.params` (the DeepLens graph of
deeplens/device_graph.py, saved as MXNet checkpoints are) and `deeplens.json` (name, epoch, input size,
classes, task, the exact `mo.optimize` arguments the Lambda uses, MultiBoxDetection's settings, and
the parity of the DeepLens graph with the trained model on the job's validation images).

A two-stage model's archive holds both graphs (each under its own prefix: `model_algo_1` the detector,
`image-classification` the classifier; DeepLens imports one artifact and `mo.optimize` converts each by
name) and a deeplens.json of task "two-stage": the stages' manifests (as above, each with its own parity
on its own job's validation images) and the settings the Lambda joins them by (crop rule, class-agnostic
NMS, boxes, classes per box).
"""
from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from magiccards.files import atomic_path, writing
from magiccards.model_dir import SIMPLE_NAME, TWO_STAGE, ModelDir, TwoStageDir, open_model

from . import device_parity
from .device_graph import DeviceGraph, build, run_device
from .graph import ExportError
from .parity import map_of
from .validation import find_records, read_samples

MANIFEST = "deeplens.json"
PARITY_IMAGES = 100
GATES = {"classification": {"top1_agreement": 99.0, "max_probability_difference": 1e-3},
         "detection": {"map_points_lost": 1.0, "max_box_difference": 0.01}}


def mo_arguments(model: ModelDir, name: str) -> dict:
    """The `mo.optimize(...)` call the Lambda makes (DeepLens's GPU runs FP16)."""
    _, h, w = model.input_shape
    return {"model_name": name, "input_width": w, "input_height": h, "platform": "MXNet",
            "aux_inputs": {"--epoch": model.epoch, "--precision": "FP16"}}


def manifest(model: ModelDir, device: DeviceGraph, name: str, parity: dict) -> dict:
    _, h, w = model.input_shape
    return {"name": name, "epoch": model.epoch, "task": model.task, "network": model.network,
            "input_width": w, "input_height": h, "classes": list(model.classes),
            "input": {"layout": "NCHW", "channels": "BGR", "range": "0-255",
                      "normalisation": "in the graph: its first layer (deeplens_input, a 1x1 convolution) is "
                                       "(pixel / 255 - mean) / std of the RGB channels",
                      "mean": list(model.mean), "std": list(model.std),
                      "resize": "shorter side to the input, centre crop" if model.task == "classification"
                                else "whole frame to the input size"},
            "output": ("probabilities [1, classes] (SoftmaxActivation)" if model.task == "classification" else
                       "MultiBoxDetection rows [class, score, xmin, ymin, xmax, ymax], corners normalised, class -1 "
                       "= none; on the device: parseResult('ssd')"),
            "parse_result": "classification" if model.task == "classification" else "ssd",
            "mo_optimize": mo_arguments(model, name), "detection": device.detection, "parity": parity}


def check_graph(model: ModelDir, device: DeviceGraph, samples) -> dict:
    """Parity of the DeepLens graph (in MXNet) with the trained model, with its gate.

    A classifier is held to the trained model as served (serve/'s MXNet predictor). A detector is held to
    the trained network decoded by the device's own rule (MultiBoxDetection: each anchor's best class only);
    what that rule costs against the model as served (GluonCV decodes every class of every anchor, and a
    runner-up class adds recall) is measured and reported beside it, never hidden in the gate."""
    from magiccards.serve.predictor import Predictor

    predictor = Predictor(model, backend="mxnet")
    served = [predictor.predict([sample.image])[0] for sample in samples]
    batches = [device_parity.device_input(sample.image, model.task, model.input_shape) for sample in samples]
    got = [run_device(device, batch) for batch in batches]
    if model.task == "classification":
        record = device_parity.compare_classification(np.array([r.probabilities for r in served]),
                                                      np.concatenate(got))
        gate = GATES["classification"]
        passed = (record["top1_agreement"] >= gate["top1_agreement"]
                  and record["max_probability_difference"] <= gate["max_probability_difference"])
    else:
        classes = len(model.classes)
        found = [device_parity.detections(g[0], list(model.classes)) for g in got]
        record = device_parity.compare_detection(device_parity.multibox_reference(model, [s.image for s in samples]), found, samples,
                                                 classes)
        map_served = map_of(served, samples, classes)
        record.update(map_served=round(map_served, 5),
                      map_points_by_rule=round(100.0 * (map_served - record["map_reference"]), 3))
        gate = GATES["detection"]
        passed = device_parity.detection_passed(record, gate)
    return dict(record, images=len(samples), passed=bool(passed), gate=gate)


def describe(record: dict, what: str = "DeepLens graph vs the trained model") -> str:
    if "top1_agreement" in record:
        figures = (f"top-1 agreement {record['top1_agreement']:.1f} %, largest probability difference "
                   f"{record['max_probability_difference']:.2g}")
    else:
        boxes = (f"99 % of {record['matched_detections']} confident detections within "
                 f"{100 * record['max_box_difference']:.2f} % of the image" if record["matched_detections"] else
                 "no confident detection (score >= 0.5) to compare boxes on")
        figures = (f"mAP {record.get('map_device', 0):.4f} vs {record.get('map_reference', 0):.4f} "
                   f"({record['map_points_lost']:+.2f} points), {boxes}")
        if "map_served" in record:
            figures += (f"; the reference decodes as MultiBoxDetection does (each anchor's best class): against "
                        f"the model as served (every class, mAP {record['map_served']:.4f}) that rule costs "
                        f"{record['map_points_by_rule']:+.2f} points")
    return f"parity ({what}, {record['images']} images): {figures}: {'passed' if record['passed'] else 'FAILED'}"


def save_checkpoint(device: DeviceGraph, folder: Path, name: str, epoch: int) -> None:
    """`<name>-symbol.json` and `<name>-<epoch:04d>.params` (arg:/aux: keys, as mx.model.save_checkpoint)."""
    import mxnet as mx

    device.symbol.save(str(folder / f"{name}-symbol.json"))
    mx.nd.save(str(folder / f"{name}-{epoch:04d}.params"),
               {**{f"arg:{k}": v for k, v in device.arg_params.items()},
                **{f"aux:{k}": v for k, v in device.aux_params.items()}})


def two_stage_manifest(model: TwoStageDir, stages: dict) -> dict:
    """deeplens.json of a two-stage model: its stages' manifests and what joins them on the device."""
    return {"task": TWO_STAGE, "classes": list(model.classes), "stages": stages,
            "two_stage": {"crop": model.card.get("crop"), "nms_iou": model.nms_iou, "max_boxes": model.max_boxes,
                          "box_threshold": model.box_threshold, "classes_per_box": model.classes_per_box},
            "output": "as a detector's: boxes over the classifier's classes, score = box score x class probability",
            "parity": {"passed": all(s["parity"]["passed"] for s in stages.values()),
                       **{key: s["parity"] for key, s in stages.items()}}}


def stage_manifests(value: dict) -> list[tuple[str | None, dict]]:
    """[(stage, its manifest)] of a package's deeplens.json: [(None, value)] for one network, the detector's
    and the classifier's for a two-stage model."""
    if value.get("task") != TWO_STAGE:
        return [(None, value)]
    return [(key, value["stages"][key]) for key in ("detector", "classifier")]


def _stage(model: ModelDir, given: Path | None, flag: str, images: int, name: str, log) -> tuple[DeviceGraph, dict]:
    """The DeepLens graph of one network and its manifest, its parity checked on its validation records."""
    records = find_records(model, given, f"the DeepLens parity check ({flag} REC)")
    device = build(model)
    parity = check_graph(model, device, read_samples(records, model.task, images))
    parity["validation"] = str(records)
    log(describe(parity))
    return device, manifest(model, device, name, parity)


def package(model_path: Path, out: Path, validation: Path | None = None, images: int = PARITY_IMAGES,
            name: str | None = None, classifier_validation: Path | None = None, log=print) -> dict:
    """Write the DeepLens archive of the model at `model_path` to `out`; returns its manifest. A two-stage
    model's detector is checked on `validation` and its classifier on `classifier_validation` (default: the
    records each was trained with)."""
    if images < 1:
        raise ExportError(f"--images must be at least 1 (got {images})")
    model = open_model(Path(model_path))
    out = Path(out)
    if not out.name.endswith((".tar.gz", ".tgz")):
        raise ExportError(f"--out {out}: give the archive's file name, e.g. {out.name.split('.')[0] or 'model'}.tar.gz")
    graphs = []
    if isinstance(model, TwoStageDir):
        stages = {}
        for key, given, flag in (("detector", validation, "--validation"),
                                 ("classifier", classifier_validation, "--classifier-validation")):
            stage = getattr(model, key)
            log(f"{key}:")
            device, stages[key] = _stage(stage, given or model.validation_records(key), flag, images, stage.prefix, log)
            graphs.append((device, stage.prefix, stage.epoch))
        value = two_stage_manifest(model, stages)
    else:
        name = name or model.prefix
        device, value = _stage(model, validation, "--validation", images, name, log)
        graphs.append((device, name, model.epoch))
    with writing(f"the package {out}"), tempfile.TemporaryDirectory(prefix="magiccards-deeplens-") as scratch:
        folder = Path(scratch)
        import mxnet as mx

        try:
            for device, graph_name, epoch in graphs:
                save_checkpoint(device, folder, graph_name, epoch)
        except mx.base.MXNetError:  # MXNet's own word for a write that failed (a full disk, a quota)
            raise ExportError(f"cannot write the package {out}: the temporary folder ran out of space while the "
                              "graph was saved (free some, or set TMPDIR to a larger disk)") from None
        (folder / MANIFEST).write_text(json.dumps(value, indent=1))
        with atomic_path(out) as tmp:
            with tarfile.open(tmp, "w:gz") as tar:
                for path in sorted(folder.iterdir()):
                    tar.add(path, arcname=path.name)
    log(f"wrote {out}")
    return value


def read_package(archive: Path, workdir: Path) -> tuple[Path, dict]:
    """Unpack a DeepLens archive safely into `workdir`; returns (folder, manifest)."""
    from magiccards.errors import ModelDirError
    from magiccards.model_dir import unpack

    archive = Path(archive)
    if not archive.is_file():
        raise ExportError(f"{archive} does not exist")
    try:
        folder = unpack(archive, workdir)
    except ModelDirError as e:  # a broken or hostile archive (paths outside its root): say what it is
        raise ExportError(f"{archive} is not a DeepLens package: {e}") from None
    path = folder / MANIFEST
    if not path.is_file():
        raise ExportError(f"{archive} has no {MANIFEST} at its root (make it with `magiccards deeplens package`)")
    try:
        value = json.loads(path.read_text())
        wanted = [(stage["name"], f) for _, stage in stage_manifests(value)
                  for f in (f"{stage['name']}-symbol.json", f"{stage['name']}-{int(stage['epoch']):04d}.params")]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ExportError(f"{archive}: its {MANIFEST} is damaged (make the package again with `magiccards deeplens "
                          "package`)") from None
    for name, f in wanted:  # a graph's name is a model directory's prefix: the same rule, never a path
        if not isinstance(name, str) or not SIMPLE_NAME.match(name) or not (folder / f).is_file():
            raise ExportError(f"{archive} lacks {f[:120]}")
    return folder, value


def load_package_graph(folder: Path, value: dict) -> DeviceGraph:
    """The DeepLens graph stored in an unpacked package, for running in MXNet."""
    import mxnet as mx

    symbol = mx.sym.load(str(folder / f"{value['name']}-symbol.json"))
    loaded = mx.nd.load(str(folder / f"{value['name']}-{int(value['epoch']):04d}.params"))
    arg = {k[4:]: v for k, v in loaded.items() if k.startswith("arg:")}
    aux = {k[4:]: v for k, v in loaded.items() if k.startswith("aux:")}
    return DeviceGraph(symbol, arg, aux, (1, 3, value["input_height"], value["input_width"]), value["task"],
                       value.get("detection"))
