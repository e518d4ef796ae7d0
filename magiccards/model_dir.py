"""The model directory: the one contract between training and everything downstream.

    <prefix>-symbol.json, <prefix>-0000.params   the inference graph (mx.gluon.SymbolBlock.imports)
    classes.txt                                   class names, line number = class index
    model-shapes.json                             [{"name": "data", "shape": [1, 3, H, W]}]
    hyperparams.json                              the job's hyperparameters (strings, as SageMaker passes them)
    model-card.json                               task, network, input, normalisation, classes, metrics, data sizes
    training-state.params                         Gluon parameters by name (incremental training, transfer)
    exports/<format>-<precision>/model.onnx|.xml  ONNX / OpenVINO exports (`magiccards export`)
    exports/parity.json                           one parity record per export (serve/'s `auto` reads it), naming
                                                  the SHA-256 of every file it judged: a record whose files
                                                  changed since (a cut re-export, another symbol) is ignored
    exports/decode.json, exports/anchors.npy      a detector's graph tail, replayed by serve/detection_decode

A two-stage model (`magiccards combine`) is a folder of two model directories and its own card:

    detector/, classifier/                        a detector's and a classifier's model directories, as above
    model-card.json                               task "two-stage"; the crop rule (data/crops.py), the class-
                                                  agnostic NMS threshold, how many classes each box gets, how
                                                  scores combine; the classifier's classes as the model's
    classes.txt                                   the classifier's classes (the model answers as a detector)

The prefixes are the built-in algorithms' names: `image-classification` and `model_algo_1` (detection).
`train/export.py` writes a model directory through `write_metadata`; the job's `model` channel,
`serve/`, `deeplens/` and the cloud commands read one through `open_model_dir` and nothing else.
No MXNet here: opening a model directory is cheap.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

from magiccards.data.crops import RULE as CROP_RULE
from magiccards.data.samples import read_classes, write_classes
from magiccards.errors import ModelDirError
from magiccards.files import write_text_atomic

PREFIX = {"classification": "image-classification", "detection": "model_algo_1"}
TWO_STAGE = "two-stage"  # the task of a two-stage model's card: a detector finds cards, a classifier names them
DETECTOR_DIR, CLASSIFIER_DIR = "detector", "classifier"  # its stages: a model directory each
CLASSES = "classes.txt"
SHAPES = "model-shapes.json"
HYPERPARAMETERS = "hyperparams.json"
CARD = "model-card.json"
TRAINING_STATE = "training-state.params"
EXPORTS = "exports"
ARCHIVE = "model.tar.gz"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EXPORT_FORMATS = {"onnx": ("onnxruntime", "model.onnx"), "openvino": ("openvino", "model.xml")}
EXPORT_FILES = {"onnx": ("model.onnx",), "openvino": ("model.xml", "model.bin")}  # the files of one export
PRECISIONS = ("fp32", "fp16", "int8")
PARITY = "parity.json"
DECODE_RULES = "decode.json"
ANCHORS = "anchors.npy"
# a detection export that carries its own tail (box decoding + NMS, deeplens/onnx_tail.py) ends in these outputs;
# one that ends in the heads (class probabilities, box offsets) is decoded in NumPy beside it
TAIL_OUTPUTS = ("ids", "scores", "boxes")
# a model.tar.gz larger than this once unpacked is refused (a tar bomb); MAGICCARDS_MAX_MODEL_BYTES overrides
SIMPLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_DIGESTS: dict[tuple[str, int, int], str] = {}
MAX_UNPACKED_BYTES = int(os.environ.get("MAGICCARDS_MAX_MODEL_BYTES", 8 << 30))


def symbol_name(task: str) -> str:
    return f"{PREFIX[task]}-symbol.json"


def params_name(task: str, epoch: int = 0) -> str:
    return f"{PREFIX[task]}-{epoch:04d}.params"


@dataclasses.dataclass(frozen=True)
class ModelDir:
    """An opened model directory: what its card says, and the paths of its files."""

    path: Path
    task: str
    network: str
    prefix: str
    epoch: int
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]  # channels, height, width
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    card: dict = dataclasses.field(compare=False, repr=False)

    @property
    def symbol_file(self) -> Path:
        return self.path / f"{self.prefix}-symbol.json"

    @property
    def params_file(self) -> Path:
        return self.path / f"{self.prefix}-{self.epoch:04d}.params"

    @property
    def training_state_file(self) -> Path:
        return self.path / TRAINING_STATE

    @property
    def exports_dir(self) -> Path:
        return self.path / EXPORTS

    def export_file(self, export_format: str, precision: str) -> Path:
        """Where `magiccards export --format F --precision P` writes its model file."""
        return self.exports_dir / f"{export_format}-{precision}" / EXPORT_FORMATS[export_format][1]

    def params_digest(self) -> str:
        """SHA-256 of the parameters: exports/ records it, so that exports left from another model are seen."""
        return file_sha256(self.params_file)

    def export_parts(self, export_format: str, precision: str) -> list[Path]:
        """The files one export is made of: its own (model.onnx, or model.xml and model.bin) and, for a
        detector, the anchors and decoding rules its tail runs with."""
        folder = self.export_file(export_format, precision).parent
        parts = [folder / name for name in EXPORT_FILES[export_format]]
        return parts + ([self.exports_dir / ANCHORS, self.exports_dir / DECODE_RULES] if self.task == "detection" else [])

    def export_digests(self, export_format: str, precision: str) -> dict[str, str] | None:
        """{path in the model directory: SHA-256} of everything a parity check of this export judged: the
        export's parts and the network it was made from (symbol, parameters, classes). None when a part is
        missing."""
        files = [*self.export_parts(export_format, precision), self.symbol_file, self.params_file,
                 self.path / CLASSES]
        try:
            return {str(f.relative_to(self.path)): file_sha256(f) for f in files}
        except OSError:
            return None

    def record_matches(self, record: dict) -> bool:
        """Whether a parity record was made on exactly the files there now."""
        fmt, precision = record.get("format"), record.get("precision")
        if fmt not in EXPORT_FILES or precision not in PRECISIONS or not record.get("files_sha256"):
            return False
        return record["files_sha256"] == self.export_digests(fmt, precision)

    def parity_records(self) -> list[dict]:
        """The parity records of exports/parity.json (an empty list when there are none or it is unreadable)."""
        try:
            entries = json.loads((self.exports_dir / PARITY).read_text())
        except (OSError, ValueError):
            return []
        entries = entries if isinstance(entries, list) else [entries]
        return [e for e in entries if isinstance(e, dict)]

    @property
    def stages(self) -> tuple[ModelDir]:
        """The networks of the model: itself (a two-stage model has two)."""
        return (self,)

    def exports(self) -> list[Path]:
        """The files under exports/ (ONNX, OpenVINO IR, parity records), sorted."""
        if not self.exports_dir.is_dir():
            return []
        return sorted(p for p in self.exports_dir.rglob("*") if p.is_file())


@dataclasses.dataclass(frozen=True)
class TwoStageDir:
    """An opened two-stage model: its detector finds cards, its classifier names each box's square crop.

    It answers as a detector does ([class, score, xmin, ymin, xmax, ymax] over the classifier's classes): the
    detector's boxes, class-agnostic NMS at `nms_iou`, at most `max_boxes` scoring at least `box_threshold`,
    each crop's `classes_per_box` best classes, score = box score x class probability."""

    path: Path
    detector: ModelDir
    classifier: ModelDir
    classes: tuple[str, ...]
    nms_iou: float
    classes_per_box: int
    max_boxes: int
    box_threshold: float
    card: dict = dataclasses.field(compare=False, repr=False)
    task = TWO_STAGE

    @property
    def network(self) -> str:
        return f"{self.detector.network} then {self.classifier.network}"

    @property
    def stages(self) -> tuple[ModelDir, ModelDir]:
        return self.detector, self.classifier

    def validation_records(self, stage: str) -> Path | None:
        """The validation records the stage ("detector" or "classifier") was trained with, when recorded and
        still there."""
        value = (self.card.get("validation") or {}).get(stage) if isinstance(self.card.get("validation"), dict) else None
        return Path(value) if isinstance(value, str) and Path(value).is_file() else None

    @property
    def parity_file(self) -> Path:
        """The end-to-end parity records of the exports (one per format and precision)."""
        return self.path / PARITY


TWO_STAGE_DEFAULTS = {"nms_iou": 0.45, "classes_per_box": 2, "max_boxes": 32, "box_threshold": 0.05}


def write_two_stage_card(folder: Path, classes: list[str], settings: dict, validation: dict | None = None) -> None:
    """The card and classes.txt of a two-stage model whose stages are already in `folder`. `validation`: the
    validation records each stage was trained with, where known (`export` checks on them by default)."""
    settings = {**TWO_STAGE_DEFAULTS, **settings}
    write_classes(Path(folder) / CLASSES, classes)
    _write_json(Path(folder) / CARD, {
        "task": TWO_STAGE, "detector": DETECTOR_DIR, "classifier": CLASSIFIER_DIR, "crop": CROP_RULE,
        "nms": {"class_agnostic": True, "iou": settings["nms_iou"]},
        "boxes": {"max": settings["max_boxes"], "min_score": settings["box_threshold"]},
        "classes_per_box": settings["classes_per_box"],
        "score": "box score x class probability (the detector's best class score of the box, the classifier's "
                 "softmax of its crop)",
        "output": "as a detector: [class, score, xmin, ymin, xmax, ymax] normalised to the image, over the "
                  "classifier's classes",
        "classes": classes, "validation": validation or {},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })


def _read_two_stage(root: Path, card: dict) -> TwoStageDir:
    """Open a two-stage model: both stages (each checked as any model directory), and its card's settings."""
    stages = []
    for key, folder, task in (("detector", DETECTOR_DIR, "detection"), ("classifier", CLASSIFIER_DIR, "classification")):
        path = root / folder
        if not (path / CARD).is_file():
            raise ModelDirError(f"two-stage model {root} lacks its {key} ({folder}/{CARD}); put it together again "
                                "with `magiccards combine`")
        stage_card = _load_card(path)
        if stage_card.get("task") == TWO_STAGE:
            raise ModelDirError(f"{path} is itself a two-stage model: a {key} must be one network")
        stage = _read(path, (), stage_card)
        if stage.task != task:
            raise ModelDirError(f"{path} holds a {stage.task} model where the two-stage model's {key} ({task}) goes")
        stages.append(stage)
    detector, classifier = stages
    if card.get("crop") != CROP_RULE:
        raise ModelDirError(f"{root / CARD} cuts its crops by {json.dumps(card.get('crop'))[:120]}, not by this "
                            f"version's rule {json.dumps(CROP_RULE)}: put it together again with `magiccards combine`")
    try:
        nms = card.get("nms", {}).get("iou", TWO_STAGE_DEFAULTS["nms_iou"])
        boxes = card.get("boxes", {})
        settings = (float(nms), int(card.get("classes_per_box", TWO_STAGE_DEFAULTS["classes_per_box"])),
                    int(boxes.get("max", TWO_STAGE_DEFAULTS["max_boxes"])),
                    float(boxes.get("min_score", TWO_STAGE_DEFAULTS["box_threshold"])))
    except (AttributeError, TypeError, ValueError, OverflowError):
        raise ModelDirError(f"{root / CARD}: nms, boxes or classes_per_box are not numbers") from None
    problem = check_two_stage_settings(*settings, len(classifier.classes))
    if problem:
        raise ModelDirError(f"{root / CARD}: {problem}")
    if (root / CLASSES).is_file() and tuple(read_classes(root / CLASSES)) != classifier.classes:
        raise ModelDirError(f"{root / CLASSES} differs from {CLASSIFIER_DIR}/{CLASSES}: the model's classes are its "
                            "classifier's; put it together again with `magiccards combine`")
    return TwoStageDir(root, detector, classifier, classifier.classes, *settings, card)


def check_two_stage_settings(nms_iou: float, classes_per_box: int, max_boxes: int, box_threshold: float,
                             num_classes: int) -> str | None:
    """What is wrong with a two-stage model's settings, or None."""
    if not 0 < nms_iou <= 1:
        return f"the NMS threshold {nms_iou} is not an IoU in (0, 1]"
    if not 1 <= classes_per_box <= num_classes:
        return f"classes per box {classes_per_box} is not from 1 to the classifier's {num_classes} classes"
    if not 1 <= max_boxes <= 1000:
        return f"at most {max_boxes} boxes per image: give 1 to 1000"
    if not 0 <= box_threshold < 1:
        return f"the smallest box score {box_threshold} is not in [0, 1)"
    return None


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, computed once per version of it (path, size, modification time) in a process."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def write_metadata(folder: Path, *, task: str, network: str, classes: list[str], input_shape: tuple[int, int, int],
                   hyperparameters: dict[str, str], metrics: dict, dataset_sizes: dict, framework: dict,
                   epoch: int = 0) -> None:
    """Write every file of the contract but the graph and the parameters (the framework writes those)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _, h, w = input_shape
    write_classes(folder / CLASSES, classes)
    _write_json(folder / SHAPES, [{"name": "data", "shape": [1, 3, h, w]}])
    _write_json(folder / HYPERPARAMETERS, hyperparameters)
    _write_json(folder / CARD, {
        "task": task, "network": network, "prefix": PREFIX[task], "epoch": epoch,
        "input": {"name": "data", "shape": [1, 3, h, w], "layout": "NCHW", "colour": "RGB",
                  "normalisation": "(pixel / 255 - mean) / std", "mean": MEAN, "std": STD},
        "output": ("class scores (logits), shape [1, num_classes]" if task == "classification" else
                   "ids [1,N,1], scores [1,N,1], boxes [1,N,4] in input pixels (xmin, ymin, xmax, ymax); id -1 = none"),
        "classes": classes, "metrics": metrics, "dataset": dataset_sizes,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "framework": framework,
    })


def _write_json(path: Path, value) -> None:
    write_text_atomic(path, json.dumps(value, indent=1))


def open_model_dir(path: Path, workdir: Path | None = None, require: tuple[str, ...] = ()) -> ModelDir:
    """Open a model directory, a `model.tar.gz`, or a channel folder holding either: one network.

    An archive is unpacked safely into `workdir` (default: a new temporary folder). `require` names
    further files the caller needs (e.g. TRAINING_STATE). Raises ModelDirError naming what is missing,
    and for a two-stage model (which `open_model` opens) naming the stage folders to give instead.
    """
    model = open_model(path, workdir, require)
    if isinstance(model, TwoStageDir):
        raise ModelDirError(f"{path} is a two-stage model (a detector, then a classifier): this takes one network; "
                            f"give its {DETECTOR_DIR}/ or {CLASSIFIER_DIR}/ folder ({model.path})")
    return model


def open_model(path: Path, workdir: Path | None = None, require: tuple[str, ...] = ()) -> ModelDir | TwoStageDir:
    """`open_model_dir` for every kind of model: one network (ModelDir) or a two-stage model (TwoStageDir)."""
    path = Path(path)
    if not path.exists():
        raise ModelDirError(f"model {path} does not exist")
    if path.is_file():
        return _open_archive(path, workdir, require)
    root = _find_root(path)
    if root is None:
        archives = sorted(p for p in path.rglob("*") if p.is_file() and _is_tar_name(p.name))
        if archives:
            return _open_archive(archives[0], workdir, require)
        raise ModelDirError(f"{path} holds no model: expected {CARD} and the files beside it (the model/ folder "
                            f"of a `magiccards train` job) or its {ARCHIVE}")
    card = _load_card(root)
    return _read_two_stage(root, card) if card.get("task") == TWO_STAGE else _read(root, require, card)


def _open_archive(archive: Path, workdir: Path | None, require: tuple[str, ...]) -> ModelDir | TwoStageDir:
    """The model in `archive`, unpacked into `workdir`; an error names the archive, not the temporary folder."""
    folder = unpack(archive, workdir)
    try:
        return open_model(folder, require=require)
    except ModelDirError as e:
        raise ModelDirError(str(e).replace(str(folder), f"{archive} (unpacked)")) from None


def _find_root(folder: Path) -> Path | None:
    """The folder of the shallowest model card (a two-stage model's own card, not one of its stages')."""
    if (folder / CARD).is_file():
        return folder
    cards = sorted(folder.rglob(CARD), key=lambda p: (len(p.parts), str(p)))
    return cards[0].parent if cards else None


def _load_card(root: Path) -> dict:
    try:
        card = json.loads((root / CARD).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelDirError(f"{root / CARD} cannot be read as JSON ({e})") from None
    if not isinstance(card, dict):
        raise ModelDirError(f"{root / CARD} is not a model card (expected a JSON object)")
    return card


def _read(root: Path, require: tuple[str, ...], card: dict) -> ModelDir:
    """Open a model directory, checking that its files agree with each other (the card's fields, the classes
    and the network's outputs); each disagreement is one ModelDirError naming the file."""
    task = card.get("task")
    if task not in PREFIX:
        raise ModelDirError(f"{root / CARD} names task {str(task)[:40]!r}; expected classification, detection or "
                            f"{TWO_STAGE}")
    prefix, epoch = card.get("prefix", PREFIX[task]), card.get("epoch", 0)
    if not isinstance(prefix, str) or not SIMPLE_NAME.match(prefix):
        raise ModelDirError(f"{root / CARD}: prefix {str(prefix)[:80]!r} is not a file name prefix in the model "
                            f"directory (letters, digits, . _ -; no path): expected {PREFIX[task]!r}")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= 9999:
        raise ModelDirError(f"{root / CARD}: epoch {str(epoch)[:20]!r} is not a whole number from 0 to 9999")
    wanted = [CLASSES, f"{prefix}-symbol.json", f"{prefix}-{epoch:04d}.params", *require]
    missing = [name for name in wanted if not (root / name).is_file()]
    if missing:
        raise ModelDirError(f"model directory {root} lacks {', '.join(missing)}; give the model/ folder or "
                            f"{ARCHIVE} of a finished `magiccards train` job")
    try:
        shape = [int(v) for v in card["input"]["shape"]]
        mean = tuple(float(v) for v in card["input"].get("mean", MEAN))
        std = tuple(float(v) for v in card["input"].get("std", STD))
    except (KeyError, TypeError, ValueError, OverflowError):
        raise ModelDirError(f"{root / CARD} has no usable input shape ('input': {{'shape': [1, 3, H, W]}})") from None
    if len(shape) != 4 or shape[1] != 3 or not all(8 <= v <= 4096 for v in shape[2:]) or len(mean) != 3 \
            or len(std) != 3 or not all(math.isfinite(v) for v in mean + std) or min(std) <= 0:
        raise ModelDirError(f"{root / CARD}: input shape {shape} (or its mean and std) is not a network input "
                            "[1, 3, H, W] with H and W from 8 to 4096, three means and three positive stds")
    classes = read_classes(root / CLASSES)
    outputs = network_classes(root / f"{prefix}-symbol.json", task)
    if outputs is not None and outputs != len(classes):
        raise ModelDirError(f"{root / CLASSES} names {len(classes)} classes, but the network in "
                            f"{prefix}-symbol.json has {outputs}: the files come from different models")
    return ModelDir(root, task, str(card.get("network", "")), prefix, epoch, tuple(classes), tuple(shape[-3:]),
                    mean, std, card)


def network_classes(symbol_file: Path, task: str) -> int | None:
    """How many classes the network of an MXNet symbol file answers, read from the graph (no MXNet): a
    classifier ending in a dense layer, its width; a GluonCV SSD, its class predictions' width less the
    background. None when the graph does not say. ModelDirError for a file that is not a symbol."""
    try:
        graph = json.loads(Path(symbol_file).read_text())
        nodes, heads = graph["nodes"], graph["heads"]
        if task == "classification":
            head = nodes[heads[0][0]]
            return int(head["attrs"]["num_hidden"]) if head["op"] == "FullyConnected" else None
        softmaxes = [n for n in nodes if n["op"] in ("softmax", "SoftmaxActivation")]
        if not softmaxes:
            return None
        reshape = nodes[softmaxes[-1]["inputs"][0][0]]
        if reshape["op"] != "Reshape":
            return None
        return int(reshape["attrs"]["shape"].strip("()").split(",")[-1]) - 1
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelDirError(f"{symbol_file} is not an MXNet symbol file (cut short?): {str(e)[:120]}") from None
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ModelDirError(f"{symbol_file} is not an MXNet symbol file: it lacks nodes and heads") from None


def _is_tar_name(name: str) -> bool:
    return name.endswith((".tar.gz", ".tgz", ".tar"))


def unpack(archive: Path, workdir: Path | None = None, max_bytes: int | None = None) -> Path:
    """Unpack a model archive safely: no absolute paths, no `..`, no links leaving the folder, no devices,
    and at most `max_bytes` in all. Returns the folder it was unpacked into."""
    limit = MAX_UNPACKED_BYTES if max_bytes is None else max_bytes
    target = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="magiccards-model-"))
    made = not target.exists() or workdir is None
    target.mkdir(parents=True, exist_ok=True)
    try:
        _extract(archive, target, limit)
    except BaseException:
        if made:
            shutil.rmtree(target, ignore_errors=True)  # nothing half-unpacked left behind
        raise
    return target


def _extract(archive: Path, target: Path, limit: int) -> None:
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(archive, m)
            total = sum(m.size for m in members if m.isfile())
            if total > limit:
                raise ModelDirError(f"{archive} would unpack to {total / 1e9:.1f} GB, more than the "
                                    f"{limit / 1e9:.1f} GB allowed (MAGICCARDS_MAX_MODEL_BYTES)")
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: the standard library's own checks too
                tar.extractall(target, members=members, filter="data")
            else:
                tar.extractall(target, members=members)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ModelDirError(f"{archive} cannot be unpacked as a model archive ({e})") from None


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    """Refuse a member that would land outside the folder: an absolute path, `..`, a link leaving the
    folder, a device or FIFO (the checks of tarfile's "data" filter, for Pythons without it)."""
    def outside(name: str) -> bool:
        return name.startswith(("/", "\\")) or ".." in Path(name).parts

    escapes = outside(member.name)
    if member.issym():
        escapes = escapes or outside(os.path.normpath(os.path.join(os.path.dirname(member.name), member.linkname)))
    elif member.islnk():
        escapes = escapes or outside(os.path.normpath(member.linkname))
    if escapes:
        raise ModelDirError(f"{archive} cannot be unpacked as a model archive: member {member.name!r} "
                            "points outside the archive's folder")
    if member.isdev() or member.isfifo():
        raise ModelDirError(f"{archive} cannot be unpacked as a model archive: member {member.name!r} is a device "
                            "or FIFO, not a file")
