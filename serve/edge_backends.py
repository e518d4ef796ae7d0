"""ONNX Runtime and OpenVINO backends: they run the exports that `magiccards export` writes to exports/.

Each runs one export (exports/<format>-<precision>/) with the interface of backends.MXNetBackend: an
NCHW float32 batch in, the model card's output layout out. A detection export ends in its own box decoding
and NMS (outputs ids, scores, boxes: model_dir.TAIL_OUTPUTS). One written before it did holds the graph up
to the class probabilities and box offsets: its tail runs here in NumPy (detection_decode.py) with the
anchors and rules stored beside the export.
"""
from __future__ import annotations

import numpy as np

from magiccards.model_dir import ANCHORS, DECODE_RULES, TAIL_OUTPUTS, ModelDir
from magiccards.telemetry import openvino

from .detection_decode import decode, load_rules
from .runtime import BackendError, threads_given


class _ExportBackend:
    """One export of the model directory, and the detection tail it needs."""

    name = export_format = ""

    def __init__(self, model: ModelDir, precision: str):
        self.precision = precision
        self.file = model.export_file(self.export_format, precision)
        if not self.file.is_file():
            raise BackendError(f"{self.file} does not exist; run `magiccards export {model.path} "
                               f"--format {self.export_format} --precision {precision}`")
        self._model, self._tail = model, None

    def _tail_after(self, output_names: list[str]) -> None:
        """Load the NumPy tail when the loaded export is a detector's heads (an export written before the tail
        went into the graph); one that answers ids, scores and boxes needs none."""
        if self._model.task != "detection" or tuple(output_names) == TAIL_OUTPUTS:
            return
        exports = self._model.exports_dir
        try:
            self._tail = (np.load(exports / ANCHORS), load_rules(exports / DECODE_RULES))
        except (OSError, ValueError, TypeError) as e:
            raise BackendError(f"the detection export in {exports} lacks its anchors or decoding rules ({e}); "
                               "export it again") from None

    @property
    def tail_in_graph(self) -> bool:
        """Whether a detector's box decoding and NMS run inside the exported graph (not in NumPy here)."""
        return self._model.task == "detection" and self._tail is None

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        outputs = self.network(batch)
        return outputs if self._tail is None else self.decode(outputs)

    def network(self, batch: np.ndarray) -> list[np.ndarray]:
        """The exported graph's own outputs (a detector's heads: class probabilities and box offsets)."""
        return self._run(np.ascontiguousarray(batch, np.float32))

    def decode(self, outputs: list[np.ndarray]) -> list[np.ndarray]:
        """A detector's tail on `network`'s outputs: box decoding and per-class NMS, as MXNet's graph did."""
        anchors, rules = self._tail
        return decode(outputs[0], outputs[1], anchors, rules)

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError


class OnnxRuntimeBackend(_ExportBackend):
    name, export_format = "onnxruntime", "onnx"

    def __init__(self, model: ModelDir, precision: str = "fp32", threads: int | None = None):
        super().__init__(model, precision)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or threads_given()
        options.log_severity_level = 3  # errors only: MXNet's exporter leaves initializers among the inputs
        try:
            self._session = ort.InferenceSession(str(self.file), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own C++ exception types
            raise BackendError(f"onnxruntime cannot load {self.file}: {str(e).splitlines()[0][:300]}") from None
        self._input = self._session.get_inputs()[0].name
        self._tail_after([o.name for o in self._session.get_outputs()])
        self.ran_at = precision

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(o, np.float32) for o in self._session.run(None, {self._input: batch})]


def openvino_precision(precision: str) -> str:
    """The INFERENCE_PRECISION_HINT for an export: f32 for fp32 and int8 (its float parts), and the CPU's
    own half precision for fp16 (bf16 where the CPU has it, which OpenVINO would pick silently anyway)."""
    if precision != "fp16":
        return "f32"
    ov = openvino()

    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in capabilities else ("f16" if "FP16" in capabilities else "f32")


class OpenVinoBackend(_ExportBackend):
    """An OpenVINO IR on the CPU plugin. Exports take any batch size; a batch of one (a camera's frame, the
    server's single image) runs a copy compiled at that shape, since the CPU plugin runs a graph of static
    shapes without inferring each node's shape and allocating its memory on every call (a fifth to a third
    of the demo SSD's time at batch 1, side by side: README, `make bench-edge`)."""

    name, export_format = "openvino", "openvino"

    def __init__(self, model: ModelDir, precision: str = "fp32", threads: int | None = None):
        super().__init__(model, precision)
        ov = openvino()

        # OpenVINO picks bf16 on CPUs that have it: ask for the precision the export was checked at
        config = {"INFERENCE_NUM_THREADS": threads or threads_given(),
                  "INFERENCE_PRECISION_HINT": openvino_precision(precision)}
        core = ov.Core()
        try:
            ir = core.read_model(str(self.file))
            self._compiled = core.compile_model(ir, "CPU", config)  # the plugin compiles its own copy of `ir`
            self.for_one = _compiled_for_one(core, ir, config)  # None when the IR's batch is fixed
        except RuntimeError as e:
            raise BackendError(f"OpenVINO cannot compile {self.file}: {str(e).splitlines()[0][:300]}") from None
        self._tail_after([o.get_any_name() for o in self._compiled.outputs])
        ran = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        ran = ran.get_type_name() if hasattr(ran, "get_type_name") else str(ran)
        self.ran_at = {"f32": "fp32", "f16": "fp16"}.get(ran, ran)  # bf16 stays bf16
        if precision == "int8":
            self.ran_at = f"int8 ({self.ran_at} between)"

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        compiled = self.for_one if len(batch) == 1 and self.for_one is not None else self._compiled
        result = compiled(batch)
        return [np.asarray(result[output], np.float32) for output in compiled.outputs]


def _compiled_for_one(core, model, config):
    """`model` (an IR read, reshaped here) compiled for a batch of one when its batch size is left open (else
    None: it is fixed already)."""
    dims = list(model.inputs[0].get_partial_shape())
    if len(model.inputs) != 1 or not dims or dims[0].is_static or not all(d.is_static for d in dims[1:]):
        return None
    model.reshape({model.inputs[0]: [1] + [d.get_length() for d in dims[1:]]})
    return core.compile_model(model, "CPU", config)


BACKENDS = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVinoBackend}
