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

from magiccards.data.samples import read_classes, write_classes
from magiccards.errors import ModelDirError
from magiccards.files import write_text_atomic

PREFIX = {"classification": "image-classification", "detection": "model_algo_1"}
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

    def exports(self) -> list[Path]:
        """The files under exports/ (ONNX, OpenVINO IR, parity records), sorted."""
        if not self.exports_dir.is_dir():
            return []
        return sorted(p for p in self.exports_dir.rglob("*") if p.is_file())


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
    """Open a model directory, a `model.tar.gz`, or a channel folder holding either.

    An archive is unpacked safely into `workdir` (default: a new temporary folder). `require` names
    further files the caller needs (e.g. TRAINING_STATE). Raises ModelDirError naming what is missing.
    """
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
    return _read(root, require)


def _open_archive(archive: Path, workdir: Path | None, require: tuple[str, ...]) -> ModelDir:
    """The model in `archive`, unpacked into `workdir`; an error names the archive, not the temporary folder."""
    folder = unpack(archive, workdir)
    try:
        return open_model_dir(folder, require=require)
    except ModelDirError as e:
        raise ModelDirError(str(e).replace(str(folder), f"{archive} (unpacked)")) from None


def _find_root(folder: Path) -> Path | None:
    if (folder / CARD).is_file():
        return folder
    cards = sorted(folder.rglob(CARD))
    return cards[0].parent if cards else None


def _read(root: Path, require: tuple[str, ...]) -> ModelDir:
    """Open a model directory, checking that its files agree with each other (the card's fields, the classes
    and the network's outputs); each disagreement is one ModelDirError naming the file."""
    try:
        card = json.loads((root / CARD).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelDirError(f"{root / CARD} cannot be read as JSON ({e})") from None
    if not isinstance(card, dict):
        raise ModelDirError(f"{root / CARD} is not a model card (expected a JSON object)")
    task = card.get("task")
    if task not in PREFIX:
        raise ModelDirError(f"{root / CARD} names task {task!r}; expected classification or detection")
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
