"""Benchmark: MXNet vs ONNX Runtime vs OpenVINO (FP32, FP16/BF16, INT8), side by side in one run.

For ResNet-18 at 224 and the SSD preset at 300, with trained weights: the demo classifier's (ResNet-18
is fully convolutional up to its global pooling, so its weights run unchanged at 224) and the demo
detector's (`make demo` trains both; `--classifier` / `--detector` take any model directories). Each
is copied at the benchmark's input size, exported in every format and precision with
`magiccards export` (parity measured on the model's own validation records), then timed:

- batch-1 latency p50 / p99 of the backend (preprocessed input in, the model's outputs out; for the
  detector, box decoding and NMS included: in MXNet's graph, and in the exports' own graphs too
  (deeplens/onnx_tail.py; an export written before that decodes in NumPy, timed in its own column);
- throughput in images/s at batch 8, and what it achieves against this machine's limit: the network's
  operations per image (2 x the multiply-adds of its convolutions and matrix products, counted on the
  ONNX graph) times images/s, as a share of the machine's peak measured first with the runtime's own
  kernels on all cores (OpenVINO's CPU plugin, the better of a 1024^3 matrix product and a 1x1 convolution
  of the same size: FP32, and INT8 between FakeQuantize layers as NNCF's models have them; the kernel it
  ran is printed). Half-precision rows are held to the FP32 peak (on a CPU with bf16 arithmetic they may
  exceed it). A share above 100 % is possible: a convolution computed with fewer multiplications
  (Winograd) counts here at its direct cost.

Targets: OpenVINO FP32 >= 3x MXNet for ResNet-18 and >= 3.5x for the SSD; INT8 >= 1.8x OpenVINO FP32,
with the parity gates of the export; OpenVINO FP32 >= 70 % of the FP32 peak on ResNet-18 at batch 8.
Every backend of a model is timed in ten alternating rounds (each round runs them all in turn), so that a
busy spell of a shared machine falls on all of them alike. Everything runs on the cores this process is given.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEMO = Path("demo-output")
EXPORTS = [("onnx", "fp32"), ("openvino", "fp32"), ("openvino", "fp16"), ("openvino", "int8")]


def at_size(model: Path, size: int, out: Path) -> Path:
    """A copy of a job's model directory (and its validation channel) whose card says `size`."""
    job = out / f"{model.parent.name}-{size}"
    shutil.rmtree(job, ignore_errors=True)
    shutil.copytree(model, job / "model", ignore=shutil.ignore_patterns("exports"))
    validation = model.parent / "input" / "data" / "validation"
    if validation.is_dir():
        shutil.copytree(validation, job / "input" / "data" / "validation")
    for name in ("model-card.json", "model-shapes.json"):
        path = job / "model" / name
        value = json.loads(path.read_text())
        for entry in (value["input"] if name == "model-card.json" else value[0],):
            entry["shape"] = [1, 3, size, size]
        path.write_text(json.dumps(value, indent=1))
    return job / "model"


def timings(backends: dict, batch1: np.ndarray, batch8: np.ndarray, runs: int, rounds: int = 10) -> dict:
    """p50/p99 batch-1 latency and batch-8 images/s of each backend, timed in alternating rounds (each round
    runs every backend in turn) so that a noisy spell of a shared machine falls on all of them alike."""
    for backend in backends.values():
        for _ in range(5):
            backend.run(batch1)
        backend.run(batch8)
    latencies = {name: [] for name in backends}
    batch8_seconds = dict.fromkeys(backends, 0.0)
    per_round, batches = max(1, runs // rounds), max(1, runs // (8 * rounds))
    for _ in range(rounds):
        for name, backend in backends.items():
            for _ in range(per_round):
                start = time.perf_counter()
                backend.run(batch1)
                latencies[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            for _ in range(batches):
                backend.run(batch8)
            batch8_seconds[name] += time.perf_counter() - start
    out = {}
    for name, measured in latencies.items():
        measured.sort()
        out[name] = {"p50_ms": 1000 * statistics.median(measured), "p99_ms": 1000 * measured[int(0.99 * (len(measured) - 1))],
                     "images_per_s": 8 * batches * rounds / batch8_seconds[name]}
    return out


PEAK_FORMS = {"matmul": ([1024, 1024], (1024, 1024)), "1x1 convolution": ([1, 512, 64, 64], (512, 512, 1, 1))}
PEAK_OPS = 2 * 1024 ** 3  # both forms: 1024 x 1024 x 1024 multiply-adds


def machine_peak(kind: str, seconds: float = 3.0) -> dict:
    """This machine's GOP/s for `kind` ("fp32", or "int8": u8 activations and symmetric i8 weights between
    FakeQuantize layers, as NNCF's models have them) with OpenVINO's CPU kernels on all cores: the better of a
    1024^3 matrix product and a 1x1 convolution of the same size (the runtime picks other kernels for each),
    as many requests in flight as it asks for."""
    best = {"gops": 0.0}
    for form in PEAK_FORMS:
        result = _product_rate(kind, form, seconds / len(PEAK_FORMS))
        if result["gops"] > best["gops"]:
            best = result
    return best


def _product_rate(kind: str, form: str, seconds: float) -> dict:
    import openvino as ov
    import openvino.opset13 as ops

    data_shape, weight_shape = PEAK_FORMS[form]
    data = ops.parameter(data_shape, np.float32)
    x, w = data, ops.constant(np.random.default_rng(0).standard_normal(weight_shape).astype(np.float32))
    if kind == "int8":
        x = ops.fake_quantize(x, np.float32(0), np.float32(8), np.float32(0), np.float32(8), 256)
        w = ops.fake_quantize(w, np.float32(-4), np.float32(4), np.float32(-4), np.float32(4), 255)
    y = ops.matmul(x, w, False, True) if form == "matmul" else ops.convolution(x, w, [1, 1], [0, 0], [0, 0], [1, 1])
    compiled = ov.Core().compile_model(ov.Model([y], [data]), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "THROUGHPUT"})
    primitive = next((op.get_rt_info()["primitiveType"].astype(str) for op in compiled.get_runtime_model().get_ops()
                      if op.get_rt_info()["layerType"].astype(str) in ("FullyConnected", "MatMul", "Convolution")), "?")
    queue = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    values = np.random.default_rng(1).uniform(0, 8, data_shape).astype(np.float32)
    done, start = 0, None
    while start is None or time.perf_counter() - start < seconds:
        if start is None and done >= 2 * len(queue):  # warmed up
            start, done = time.perf_counter(), 0
        for _ in range(len(queue)):
            queue.start_async({0: values})
        queue.wait_all()
        done += len(queue)
    return {"gops": PEAK_OPS * done / (time.perf_counter() - start) / 1e9, "form": form, "primitive": primitive}


def network_gop(onnx_file: Path) -> float:
    """Operations per image of an exported network: 2 x the multiply-adds of its Conv, ConvTranspose, Gemm and
    MatMul nodes, with the shapes ONNX's shape inference gives at batch 1."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_file))).graph
    shapes = {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
              for v in list(graph.value_info) + list(graph.output) + list(graph.input)}
    shapes.update({t.name: list(t.dims) for t in graph.initializer})
    macs = 0
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and node.output[0] in shapes and node.input[1] in shapes:
            out, weight = shapes[node.output[0]], shapes[node.input[1]]
            spatial = int(np.prod(out[2:])) if node.op_type == "Conv" else int(np.prod(shapes[node.input[0]][2:]))
            macs += spatial * int(np.prod(weight))
        elif node.op_type in ("Gemm", "MatMul") and node.input[1] in shapes and node.output[0] in shapes:
            rows = int(np.prod(shapes[node.output[0]][1:-1])) if node.op_type == "MatMul" else 1  # per image
            macs += rows * int(np.prod(shapes[node.input[1]]))  # K x M multiply-adds a row
    return 2 * macs / 1e9


def bench_model(label: str, model: Path, runs: int, peaks: dict, log) -> list[dict]:
    from magiccards.deeplens.export import export
    from magiccards.deeplens.validation import find_records, read_samples
    from magiccards.serve.backends import select
    from magiccards.serve.preprocess import network_input

    from magiccards.model_dir import open_model_dir

    records = {}
    for fmt, precision in EXPORTS:
        records[(fmt, precision)] = export(model, fmt, precision, log=lambda line: None)
        log(f"  {label}: exported {fmt} {precision}: parity {'passed' if records[(fmt, precision)]['passed'] else 'FAILED'}")
    opened = open_model_dir(model)
    gop = network_gop(opened.export_file("onnx", "fp32"))
    samples = read_samples(find_records(opened, None, "the benchmark"), opened.task, 8)
    inputs = np.stack([network_input(s.image, opened.task, opened.input_shape, opened.mean, opened.std)
                       for s in (samples * 8)[:8]])
    names = [("mxnet", None), ("onnxruntime:fp32", ("onnx", "fp32")), ("openvino:fp32", ("openvino", "fp32")),
             ("openvino:fp16", ("openvino", "fp16")), ("openvino:int8", ("openvino", "int8"))]
    backends = {name: select(opened, name) for name, _ in names}
    timed = timings(backends, inputs[:1], inputs, runs)
    rows = []
    for name, key in names:
        backend = backends[name]
        row = {"model": label, "backend": name, "ran_at": backend.ran_at, **timed[name]}
        kind = "int8" if name.endswith("int8") else "fp32"  # half precision rows too: this CPU's float peak
        row.update(gop=gop, gops=gop * row["images_per_s"], peak=kind)
        row["of_peak"] = row["gops"] / peaks[kind]["gops"]
        if key and opened.task == "detection" and not backend.tail_in_graph:  # an export without its tail: NumPy
            outputs = backend.network(inputs[:1])
            start = time.perf_counter()
            for _ in range(runs):
                backend.decode(outputs)
            row["decode_ms"] = 1000 * (time.perf_counter() - start) / runs
        if key:
            record = records[key]
            row["parity"] = (f"top-1 {record['top1_agreement']:.1f} %" if "top1_agreement" in record else
                             f"mAP {record['map_points_lost']:+.2f} pt") + ("" if record["passed"] else " FAILED")
        else:
            row["parity"] = "reference"
        rows.append(row)
        log(f"  {label} {name} ({row['ran_at']}): p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
            f"{row['images_per_s']:.1f} img/s")
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | backend (ran at) | p50 ms | p99 ms | of which decode + NMS | img/s (batch 8) | GOP/s "
             "| of peak | vs MXNet p50 | parity |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        reference = next(r for r in rows if r["model"] == row["model"] and r["backend"] == "mxnet")
        tail = f"{row['decode_ms']:.2f}" if "decode_ms" in row else ("in graph" if row["model"].startswith("SSD")
                                                                     else "")
        lines.append(f"| {row['model']} | {row['backend']} ({row['ran_at']}) | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} "
                     f"| {tail} | {row['images_per_s']:.1f} | {row['gops']:.1f} | {100 * row['of_peak']:.0f} % "
                     f"({row['peak']}) | {reference['p50_ms'] / row['p50_ms']:.2f}x "
                     f"| {row['parity']} |")
    return "\n".join(lines)


def verdicts(rows: list[dict]) -> list[str]:
    out = []
    for label, target in (("ResNet-18 224", 3.0), ("SSD 300", 3.5)):
        by = {r["backend"]: r for r in rows if r["model"] == label}
        if not by:
            continue
        fp32 = by["mxnet"]["p50_ms"] / by["openvino:fp32"]["p50_ms"]
        int8 = by["openvino:fp32"]["p50_ms"] / by["openvino:int8"]["p50_ms"]
        out.append(f"{label}: OpenVINO FP32 {fp32:.2f}x MXNet (target >= {target}x: {'met' if fp32 >= target else 'MISSED'}); "
                   f"INT8 {int8:.2f}x OpenVINO FP32 (target >= 1.8x: {'met' if int8 >= 1.8 else 'MISSED'})")
        if label == "ResNet-18 224":
            share = by["openvino:fp32"]["of_peak"]
            out.append(f"{label}: OpenVINO FP32 at batch 8 runs {by['openvino:fp32']['gops']:.1f} GOP/s, {100 * share:.0f} % of "
                       f"this machine's FP32 peak (target >= 70 %: {'met' if share >= 0.7 else 'MISSED'})")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", type=Path, default=DEMO / "cards-job" / "model")
    parser.add_argument("--detector", type=Path, default=DEMO / "scenes-job" / "model")
    parser.add_argument("--runs", type=int, default=400, help="timed batch-1 runs per backend, in 10 alternating rounds")
    parser.add_argument("--out", type=Path, default=Path("bench-output") / "edge")
    args = parser.parse_args(argv)
    for model in (args.classifier, args.detector):
        if not (model / "model-card.json").is_file():
            print(f"error: {model} is not a model directory (run `make demo` first, or pass --classifier/--detector)",
                  file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench-edge-", dir=args.out))
    rows = []
    peaks = {kind: machine_peak(kind) for kind in ("fp32", "int8")}
    peak_text = ("this machine's peak (OpenVINO CPU, all cores, the better of a 1024^3 matrix product and 1x1 "
                 "convolution): " + ", ".join(f"{kind.upper()} {p['gops']:.1f} GOP/s ({p['form']}, {p['primitive']})"
                                              for kind, p in peaks.items()))
    print(peak_text, flush=True)
    try:
        for label, model, size in (("ResNet-18 224", args.classifier, 224), ("SSD 300", args.detector, 300)):
            print(f"{label}: {model} at {size} x {size}", flush=True)
            rows += bench_model(label, at_size(model, size, scratch), args.runs, peaks,
                                lambda line: print(line, flush=True))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    text = peak_text + "\n\n" + table(rows) + "\n\n" + "\n".join(verdicts(rows)) + "\n"
    print("\n" + text)
    (args.out / "edge.md").write_text(text)
    (args.out / "edge.json").write_text(json.dumps({"peaks": peaks, "rows": rows}, indent=1))
    print(f"written: {args.out / 'edge.md'}, {args.out / 'edge.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
