"""The model directory: the one contract between training and everything downstream.

    <prefix>-symbol.json, <prefix>-0000.params   the inference graph (mx.gluon.SymbolBlock.imports)
    classes.txt                                   class names, line number = class index
    model-shapes.json                             [{"name": "data", "shape": [1, 3, H, W]}]
    hyperparams.json                              the job's hyperparameters (strings, as SageMaker passes them)
    model-card.json                               task, network, input, normalisation, classes, metrics, data sizes
    training-state.params                         Gluon parameters by name (incremental training, transfer)
    exports/<format>-<precision>/model.onnx|.xml  ONNX / OpenVINO exports (`magiccards export`)
    exports/parity.json                           one parity record per export (serve/'s `auto` reads it)
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
import os
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
PRECISIONS = ("fp32", "fp16", "int8")
PARITY = "parity.json"
DECODE_RULES = "decode.json"
ANCHORS = "anchors.npy"
# a model.tar.gz larger than this once unpacked is refused (a tar bomb); MAGICCARDS_MAX_MODEL_BYTES overrides
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
        """SHA-256 of the parameters: an export records it, so that one left from another model is seen.
        Computed once per file version (path, size, modification time) in a process."""
        stat = self.params_file.stat()
        key = (str(self.params_file.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _DIGESTS:
            digest = hashlib.sha256()
            with open(self.params_file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            _DIGESTS[key] = digest.hexdigest()
        return _DIGESTS[key]

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
    try:
        card = json.loads((root / CARD).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelDirError(f"{root / CARD} cannot be read as JSON ({e})") from None
    if not isinstance(card, dict):
        raise ModelDirError(f"{root / CARD} is not a model card (expected a JSON object)")
    task = card.get("task")
    if task not in PREFIX:
        raise ModelDirError(f"{root / CARD} names task {task!r}; expected classification or detection")
    prefix, epoch = card.get("prefix", PREFIX[task]), int(card.get("epoch", 0))
    wanted = [CLASSES, f"{prefix}-symbol.json", f"{prefix}-{epoch:04d}.params", *require]
    missing = [name for name in wanted if not (root / name).is_file()]
    if missing:
        raise ModelDirError(f"model directory {root} lacks {', '.join(missing)}; give the model/ folder or "
                            f"{ARCHIVE} of a finished `magiccards train` job")
    try:
        shape = [int(v) for v in card["input"]["shape"]]
        mean = tuple(float(v) for v in card["input"].get("mean", MEAN))
        std = tuple(float(v) for v in card["input"].get("std", STD))
    except (KeyError, TypeError, ValueError):
        raise ModelDirError(f"{root / CARD} has no usable input shape ('input': {{'shape': [1, 3, H, W]}})") from None
    classes = read_classes(root / CLASSES)
    return ModelDir(root, task, str(card.get("network", "")), prefix, epoch, tuple(classes), tuple(shape[-3:]),
                    mean, std, card)


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
