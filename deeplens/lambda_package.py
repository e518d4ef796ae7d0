"""`magiccards deeplens lambda MODEL_DIR --out DIR`: the DeepLens inference function for a model.

DIR gets `lambda_function.py` (deeplens/lambda_src/, Python 3.7 as the device runs it), `labels.txt`
and `config.json`: the model's name and input size, the exact `mo.optimize` arguments `package`
records, the parser (`classification` or `ssd`), the score threshold, the stream FIFO.

For a two-stage model config.json holds both stages (each its `mo.optimize` arguments and parser) and
what joins them, and DIR gets the two modules the function joins them with, shipped as they are, so the
device cuts and suppresses exactly as `serve` does: `crops.py` (the crop rule, data/crops.py) and
`detection_decode.py` (class-agnostic NMS, serve/detection_decode.py).
"""
from __future__ import annotations

import ast
import json
import shutil
import zipfile
from pathlib import Path

from magiccards.files import atomic_path, write_text_atomic, writing
from magiccards.data import crops
from magiccards.model_dir import TwoStageDir, open_model
from magiccards.serve import detection_decode

from .graph import ExportError
from .package import mo_arguments

SOURCE = Path(__file__).with_name("lambda_src") / "lambda_function.py"
HANDLER = "lambda_function.function_handler"
RUNTIME = "python3.7"
RESULTS_FIFO = "/tmp/results.mjpeg"


def check_syntax(source: str) -> None:
    """The device runs Python 3.7: refuse code that needs a newer parser."""
    try:
        ast.parse(source, feature_version=(3, 7))
    except SyntaxError as e:
        raise ExportError(f"the Lambda is not Python 3.7 (line {e.lineno}: {e.msg})") from None


SHIPPED = (crops, detection_decode)  # the modules a two-stage function imports, copied beside it


def _stage(model, name: str) -> dict:
    """What the function needs of one network: its name, input size, `mo.optimize` arguments and parser."""
    mo = mo_arguments(model, name)
    return {"name": name, "task": model.task, "input_width": mo["input_width"], "input_height": mo["input_height"],
            "platform": mo["platform"], "aux_inputs": mo["aux_inputs"],
            "parse_result": "classification" if model.task == "classification" else "ssd"}


def config(model, name: str | None = None, score_threshold: float = 0.5, top_k: int = 3) -> dict:
    """config.json of the function for `model` (an opened model directory or two-stage model)."""
    common = {"labels": "labels.txt", "score_threshold": score_threshold, "top_k": top_k,
              "results_fifo": RESULTS_FIFO, "max_frames": None}
    if isinstance(model, TwoStageDir):
        return {"task": model.task, "stages": {key: _stage(stage, stage.prefix) for key, stage in
                                               (("detector", model.detector), ("classifier", model.classifier))},
                "two_stage": {"nms_iou": model.nms_iou, "max_boxes": model.max_boxes,
                              "box_threshold": model.box_threshold, "classes_per_box": model.classes_per_box},
                **common}
    return {**_stage(model, name or model.prefix), **common}


def write_lambda(model_path: Path, out: Path, score_threshold: float = 0.5, name: str | None = None) -> Path:
    """Write the function's folder; returns it."""
    if not 0 <= score_threshold <= 1:
        raise ExportError(f"--score-threshold {score_threshold} is not between 0 and 1")
    model = open_model(Path(model_path))
    sources = [SOURCE] + ([Path(module.__file__) for module in SHIPPED] if isinstance(model, TwoStageDir) else [])
    for path in sources:
        check_syntax(path.read_text())
    out = Path(out)
    with writing(f"the Lambda folder {out}"):
        out.mkdir(parents=True, exist_ok=True)
        for path in sources:
            shutil.copy2(path, out / path.name)
        write_text_atomic(out / "labels.txt", "".join(f"{c}\n" for c in model.classes))
        write_text_atomic(out / "config.json", json.dumps(config(model, name, score_threshold), indent=1))
    return out


def zip_lambda(folder: Path, target: Path) -> Path:
    """The function's deployment package (the folder's files at the zip's root)."""
    with atomic_path(target) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(Path(folder).iterdir()):
                if path.is_file():
                    archive.write(path, path.name)
    return target
