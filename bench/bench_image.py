"""Benchmark of the training image (make bench-image).

Prints: image size; build time cold (no cache) and from cache; seconds from `docker run` to the
first training step; Pipe-mode throughput / File-mode throughput for the same job (target >= 0.95).
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEED = re.compile(r"^Epoch\[(\d+)\] Speed: ([0-9.]+) samples/sec")


def _data(out: Path) -> Path:
    from magiccards.data.pack import pack
    from magiccards.data.synth import synth
    rec = out / "cards-rec"
    if not (rec / "train.rec").is_file():
        synth(out / "cards", count=600, classes=4, size=96, seed=7, progress=False)
        pack(out / "cards", rec, val_fraction=0.2, progress=False, log=lambda *a: None)
    return rec


def _job(data: Path, job: Path, image: str, mode: str) -> tuple[float, float]:
    """(seconds from docker run to the first training step, mean epoch throughput after the first)."""
    from magiccards.container.docker_run import run_docker
    hp = {"network": "resnet18_v1b", "image_shape": "3,64,64", "epochs": "3", "mini_batch_size": "32",
          "optimizer": "adam", "learning_rate": "0.002", "augmentation_type": "crop"}
    shutil.rmtree(job, ignore_errors=True)  # a job folder with checkpoints would resume instead of train
    started = time.perf_counter()
    first = []
    speeds = []

    def log(line: str) -> None:
        if not first and line.startswith("Epoch[0] Batch [1]"):
            first.append(time.perf_counter() - started)
        m = SPEED.match(line)
        if m and int(m.group(1)) > 0:
            speeds.append(float(m.group(2)))
    run_docker(data, job, hp, image=image, input_mode=mode, log=log)
    return first[0], sum(speeds) / len(speeds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=REPO / "bench-output" / "image")
    ap.add_argument("--tag", default="magiccards:bench")
    ap.add_argument("--skip-cold", action="store_true", help="skip the no-cache build (downloads every package)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from magiccards.container.image import build
    quiet = lambda *a: None  # noqa: E731
    if not args.skip_cold:
        cold = build(args.tag, no_cache=True, log=quiet)
        print(f"build, no cache: {cold['seconds']:.0f} s (base {cold['base']})", flush=True)
    cached = build(args.tag, log=quiet)
    print(f"build, from cache: {cached['seconds']:.1f} s", flush=True)
    print(f"image size: {cached['size_bytes'] / 1e6:.0f} MB (target <= 1500 MB)", flush=True)
    data = _data(args.out)
    file_start, file_speed = _job(data, args.out / "job-file", args.tag, "File")
    pipe_start, pipe_speed = _job(data, args.out / "job-pipe", args.tag, "Pipe")
    print(f"docker run to first training step: {file_start:.1f} s (File mode), {pipe_start:.1f} s (Pipe mode)")
    print(f"throughput: File {file_speed:.1f} img/s, Pipe {pipe_speed:.1f} img/s, "
          f"Pipe / File {pipe_speed / file_speed:.3f} (target >= 0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
