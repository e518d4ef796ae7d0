"""What training tells the world: log lines SageMaker can scrape, and files in output/data.

The log formats are those of the built-in algorithms, so MetricDefinitions written for them work
unchanged; `METRIC_DEFINITIONS` lists the regexes in one place for the launcher.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from magiccards.files import atomic_path, write_text_atomic

logger = logging.getLogger("magiccards.train")

METRIC_DEFINITIONS = {
    "classification": [
        {"Name": "train:accuracy", "Regex": r"Epoch\[\d+\] Train-accuracy=([0-9.]+)"},
        {"Name": "validation:accuracy", "Regex": r"Epoch\[\d+\] Validation-accuracy=([0-9.]+)"},
        {"Name": "train:loss", "Regex": r"Epoch\[\d+\] Train-loss=([0-9.]+)"},
        {"Name": "train:throughput", "Regex": r"Epoch\[\d+\] Speed: ([0-9.]+) samples/sec"},
    ],
    "detection": [
        {"Name": "validation:mAP", "Regex": r"validation mAP <score>=\(([0-9.]+)\)"},
        {"Name": "train:cross_entropy", "Regex": r"Epoch\[\d+\] Train-cross_entropy=([0-9.]+)"},
        {"Name": "train:smooth_l1", "Regex": r"Epoch\[\d+\] Train-smooth_l1=([0-9.]+)"},
        {"Name": "train:throughput", "Regex": r"Epoch\[\d+\] Speed: ([0-9.]+) samples/sec"},
    ],
}


_reader_gone = False


def say(line: str) -> None:
    """One log line, flushed at once (CloudWatch and `docker logs` read stdout).

    When nobody reads the log any more (the pipe to a stopped `magiccards train` broke), logging ends
    and training goes on: stdout and stderr then lead to /dev/null."""
    global _reader_gone
    if _reader_gone:
        return
    try:
        print(line, flush=True)
    except (BrokenPipeError, ValueError, OSError):
        _reader_gone = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(devnull, fd)


def epoch_lines(task: str, epoch: int, record: dict, host: str) -> list[str]:
    """The built-in algorithm's lines for one epoch's record of metrics."""
    lines = [f"Epoch[{epoch}] Speed: {record['speed']:.2f} samples/sec",
             f"Epoch[{epoch}] Time cost={record['seconds']:.3f}"]
    if task == "classification":
        lines += [f"Epoch[{epoch}] Train-accuracy={record['train_accuracy']:.6f}",
                  f"Epoch[{epoch}] Train-loss={record['train_loss']:.6f}"]
        if "validation_accuracy" in record:
            lines += [f"Epoch[{epoch}] Validation-accuracy={record['validation_accuracy']:.6f}",
                      f"Epoch[{epoch}] Validation-top_k_accuracy={record['validation_top_k']:.6f}"]
    else:
        lines += [f"Epoch[{epoch}] Train-cross_entropy={record['train_cross_entropy']:.6f}",
                  f"Epoch[{epoch}] Train-smooth_l1={record['train_smooth_l1']:.6f}"]
        if "validation_map" in record:
            lines.append(f"#quality_metric: host={host}, epoch={epoch}, validation mAP <score>=({record['validation_map']:.6f})")
    return lines


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)


def write_history(out_dir: Path, history: list[dict], task: str) -> None:
    """metrics.json and curves.png (loss and validation metric per epoch)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "metrics.json", json.dumps(history, indent=1))
    if not history:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    loss_keys = ["train_loss"] if task == "classification" else ["train_cross_entropy", "train_smooth_l1"]
    for key in loss_keys:
        left.plot(epochs, [h[key] for h in history], marker="o", label=key.replace("_", " "))
    left.set_xlabel("epoch"), left.set_title("training loss"), left.legend()
    metric = "validation_accuracy" if task == "classification" else "validation_map"
    if task == "classification":
        right.plot(epochs, [h["train_accuracy"] for h in history], marker="o", label="train accuracy")
    if any(metric in h for h in history):
        right.plot([h["epoch"] for h in history if metric in h], [h[metric] for h in history if metric in h],
                   marker="o", label=metric.replace("_", " "))
    right.set_xlabel("epoch"), right.set_ylim(0, 1.02), right.set_title("quality"), right.legend()
    fig.tight_layout()
    _save_figure(fig, out_dir / "curves.png")


def write_confusion(out_dir: Path, matrix: np.ndarray, classes: list[str]) -> dict:
    """confusion-matrix.png/.csv and per-class accuracy; returns {class: accuracy}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    totals = matrix.sum(axis=1)
    per_class = {c: (float(matrix[i, i] / totals[i]) if totals[i] else None) for i, c in enumerate(classes)}
    rows = ["true\\predicted," + ",".join(classes)] + [f"{c}," + ",".join(str(int(v)) for v in matrix[i])
                                                      for i, c in enumerate(classes)]
    write_text_atomic(out_dir / "confusion-matrix.csv", "\n".join(rows) + "\n")
    write_text_atomic(out_dir / "per-class-accuracy.json", json.dumps(per_class, indent=1))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(classes)
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * n + 2), max(3.5, 0.6 * n + 1.5)))
    norm = matrix / np.maximum(totals[:, None], 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right"), ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title("validation confusion matrix")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    fig.tight_layout()
    _save_figure(fig, out_dir / "confusion-matrix.png")
    return per_class


def write_per_class_ap(out_dir: Path, names: list[str], aps: list[float]) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    per_class = {n: (None if ap != ap else float(ap)) for n, ap in zip(names, aps)}
    write_text_atomic(out_dir / "per-class-ap.json", json.dumps(per_class, indent=1))
    return per_class


def read_results(out_dir: Path) -> tuple[list[dict], dict]:
    """What a job wrote to `out_dir` (its output/data): the per-epoch records of `write_history` and the
    per-class scores of `write_per_class_ap` (detection) or `write_confusion` (classification), {} if none."""
    history = json.loads((out_dir / "metrics.json").read_text())
    for name in ("per-class-ap.json", "per-class-accuracy.json"):
        if (out_dir / name).is_file():
            return history, json.loads((out_dir / name).read_text())
    return history, {}
