"""Benchmark: `magiccards pack` vs mxnet's own `im2rec.py` on the same folders, side by side.

Both get the same resize, JPEG quality and worker count. Three folders: synthetic card photos at
phone-camera size (3000 px) and at 1024 px, and the real raccoon photos from ../shared/datasets
(about 500 px, smaller than most users' photos). Each
tool runs `--repeat` times, alternating, and the best time of each counts (the machine is shared).
Target: pack >= 2x im2rec's images/s.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MAGICCARDS_SHARED", REPO.parent / "shared"))


SYNTHETIC = ((3000, 200), (1024, 1000))  # (side in pixels, images): phone-camera size, then medium


def make_folders(out: Path) -> dict[str, Path]:
    """The folders to pack (made once, kept in `out`): synthetic photos at two sizes, real raccoon photos."""
    from magiccards.data.synth import synth
    folders = {}
    for size, count in SYNTHETIC:
        cards = out / f"cards-{size}px"
        if not cards.is_dir():
            synth(cards, count=count, classes=4, size=size, seed=11)
        folders[f"synthetic {size}px card photos"] = cards
    raccoon = SHARED / "datasets" / "raccoon" / "images"
    if raccoon.is_dir():
        target = out / "raccoon-folders"
        if not target.is_dir():
            for i, p in enumerate(sorted(raccoon.glob("*.jpg"))):
                (target / f"part{i % 2}").mkdir(parents=True, exist_ok=True)
                (target / f"part{i % 2}" / p.name).symlink_to(p)
        folders["real raccoon photos (~500px)"] = target
    return folders


def time_im2rec(folder: Path, work: Path, resize: int, quality: int, workers: int) -> tuple[float, int]:
    prefix = work / "im2rec"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "mxnet.tools.im2rec", "--list", "--recursive", str(prefix), str(folder)],
                   check=True, capture_output=True)
    n = len((work / "im2rec.lst").read_text().splitlines())
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mxnet.tools.im2rec", "--resize", str(resize), "--quality", str(quality),
                    "--num-thread", str(workers), str(prefix), str(folder)], check=True, capture_output=True)
    return time.perf_counter() - started, n


def time_pack(folder: Path, work: Path, resize: int, quality: int, workers: int) -> tuple[float, int]:
    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "magiccards.cli", "pack", str(folder), str(work), "--val-fraction", "0",
                    "--resize", str(resize), "--quality", str(quality), "--workers", str(workers)],
                   check=True, capture_output=True)
    seconds = time.perf_counter() - started
    return seconds, len((work / "train.lst").read_text().splitlines())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=REPO / "bench-output" / "pack")
    ap.add_argument("--resize", type=int, default=256)
    ap.add_argument("--quality", type=int, default=95)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"resize {args.resize}, quality {args.quality}, workers {args.workers}, best of {args.repeat}")
    ratios = []
    for label, folder in make_folders(args.out).items():
        best = {"im2rec": float("inf"), "pack": float("inf")}
        for _ in range(args.repeat):
            for name, fn in (("im2rec", time_im2rec), ("pack", time_pack)):
                seconds, n = fn(folder, args.out / f"run-{name}", args.resize, args.quality, args.workers)
                best[name] = min(best[name], seconds)
        rate = {k: n / v for k, v in best.items()}
        ratio = rate["pack"] / rate["im2rec"]
        ratios.append(ratio)
        print(f"{label}: {n} images | im2rec {rate['im2rec']:.0f} img/s | pack {rate['pack']:.0f} img/s "
              f"| ratio {ratio:.2f}x")
    print("pack / im2rec throughput: " + ", ".join(f"{r:.2f}x" for r in ratios) + " (target >= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
