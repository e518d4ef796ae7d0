"""Runtimes that run a model directory's network on a batch of inputs, behind one interface.

A backend takes an NCHW float32 batch and returns the network's raw outputs as NumPy arrays, in the
model card's layout: classification `[scores (N, classes)]` (logits), detection `[ids (N, K, 1),
scores (N, K, 1), boxes (N, K, 4)]` in input pixels. Everything before (decoding, preprocessing) and
after (softmax, normalising boxes) is the predictor's, shared by every backend.

`mxnet` (the symbol/params of the model directory) is always there. `onnxruntime` and `openvino` run
the exports of `magiccards export` (exports/<format>-<precision>/, with their parity records);
`select` picks one by name (`openvino`, `openvino:int8`), or with `auto` the fastest present whose
parity record passed for these very parameters.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from magiccards.model_dir import EXPORT_FORMATS, PRECISIONS, ModelDir

from . import edge_backends
from .runtime import BackendError, threads_given

NAMES = ("auto", "mxnet", "onnxruntime", "openvino")
# exports by (format, precision), fastest first on Intel CPUs, as `make bench-edge` measures them
FASTEST_FIRST = (("openvino", "int8"), ("openvino", "fp16"), ("openvino", "fp32"),
                 ("onnx", "int8"), ("onnx", "fp32"), ("onnx", "fp16"))


class MXNetBackend:
    """The model directory's own symbol and parameters, through gluon's SymbolBlock."""

    name = "mxnet"
    precision = ran_at = "fp32"

    def __init__(self, model: ModelDir, threads: int | None = None):
        # read when MXNet's engine starts: threads asked for (a server worker's share of the cores) win over an
        # inherited OMP_NUM_THREADS, which would make every worker spin as many threads as the parent had
        if threads:
            os.environ["OMP_NUM_THREADS"] = str(threads)
        else:
            os.environ.setdefault("OMP_NUM_THREADS", str(threads_given()))
        os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")
        import mxnet as mx

        self._mx = mx
        try:
            with warnings.catch_warnings():  # "cannot decide type for data": it is float32, given at the first call
                warnings.simplefilter("ignore")
                self._net = mx.gluon.SymbolBlock.imports(str(model.symbol_file), ["data"], str(model.params_file),
                                                         ctx=mx.cpu())
        except (mx.base.MXNetError, AssertionError, ValueError, OSError) as e:
            raise BackendError(f"{model.params_file} cannot be loaded by MXNet with {model.symbol_file.name} (cut "
                               f"short, or from another model?): {_last_line(e)}") from None
        self._net.hybridize(static_alloc=True, static_shape=True)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        outputs = self._net(self._mx.nd.array(batch, dtype="float32"))
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return [o.asnumpy() for o in outputs]


def _last_line(error: Exception) -> str:
    """The informative line of an MXNet error (its message ends with the C++ check that failed)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def parse(name: str | None) -> tuple[str, str | None]:
    """(runtime, precision) of a backend name: `auto`, `mxnet`, `onnxruntime`, `openvino`, or a runtime with
    a precision (`openvino:int8`). Default: $MAGICCARDS_BACKEND, else auto."""
    name = (name or os.environ.get("MAGICCARDS_BACKEND") or "auto").strip().lower()
    runtime, _, precision = name.partition(":")
    if runtime not in NAMES or (precision and (runtime in ("auto", "mxnet") or precision not in PRECISIONS)):
        raise BackendError(f"backend {name!r} is not one of {', '.join(NAMES)} (with a precision for an export: "
                           f"openvino:int8; {', '.join(PRECISIONS)}) (MAGICCARDS_BACKEND)")
    return runtime, precision or None


def _format_of(runtime: str) -> str:
    return next(f for f, (r, _) in EXPORT_FORMATS.items() if r == runtime)


def passed_exports(model: ModelDir) -> set[tuple[str, str]]:
    """(format, precision) of the exports whose parity record passed, made on the very files there now
    (the export's, the symbol's, the parameters')."""
    return {(e.get("format"), e.get("precision")) for e in model.parity_records()
            if e.get("passed") is True and model.record_matches(e)}


def available(model: ModelDir) -> list[tuple[str, str]]:
    """The exports `auto` may pick, fastest first: present, and their parity passed."""
    passed = passed_exports(model)
    return [(f, p) for f, p in FASTEST_FIRST if (f, p) in passed and model.export_file(f, p).is_file()]


def resolve(model: ModelDir, name: str | None = None) -> tuple[str, str | None]:
    """The (runtime, precision) that `name` means for `model`, without loading anything: `auto` is the
    fastest passed export (else mxnet); a runtime alone is its fastest passed export, else its fp32 one,
    else any it has. Raises BackendError when the export asked for is not there."""
    runtime, precision = parse(name)
    if runtime == "auto":
        found = available(model)
        return (EXPORT_FORMATS[found[0][0]][0], found[0][1]) if found else ("mxnet", None)
    if runtime == "mxnet":
        return runtime, None
    fmt = _format_of(runtime)
    present = [p for f, p in FASTEST_FIRST if f == fmt and model.export_file(f, p).is_file()]
    if precision is None and present:
        passed = [p for f, p in available(model) if f == fmt]
        precision = (passed or (["fp32"] if "fp32" in present else present))[0]
    if precision is None or precision not in present:
        raise BackendError(f"backend {runtime} needs an export of the model in {model.exports_dir}; run "
                           f"`magiccards export {model.path} --format {fmt} --precision {precision or 'fp32'}` first")
    return runtime, precision


def select(model: ModelDir, name: str | None = None, threads: int | None = None):
    """The backend `name` (default: $MAGICCARDS_BACKEND, else auto) loaded for `model`."""
    runtime, precision = resolve(model, name)
    if runtime == "mxnet":
        return MXNetBackend(model, threads)
    return edge_backends.BACKENDS[runtime](model, precision, threads)
