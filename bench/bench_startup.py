"""Benchmark: how fast the dataset tools start, now that data/ loads no training stack.

Side by side in one run, best of `--repeat` alternating runs (the machine is shared): `magiccards pack
--help`, what `magiccards inspect` imports before it reads, its whole run on a small .rec, and, for scale, a bare `import mxnet, gluoncv` (what
every verb paid before data/ stood on its own). Target: both verbs well under a second, and a
fraction of the training stack's import time.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def _best(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("bench-output/startup"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from magiccards.data.pack import pack
    from magiccards.data.synth import synth
    rec_dir = args.out / "rec"
    if not (rec_dir / "train.rec").is_file():
        synth(args.out / "cards", count=40, classes=4, size=96, seed=1, progress=False)
        pack(args.out / "cards", rec_dir, val_fraction=0, progress=False)
    cli = [sys.executable, "-m", "magiccards.cli"]
    runs = {"pack --help": cli + ["pack", "--help"],
            "inspect start (imports)": [sys.executable, "-c", "import magiccards.cli, magiccards.data.inspect"],
            "inspect, whole run": cli + ["inspect", str(rec_dir / "train.rec"), "--samples", "8"],
            "import mxnet, gluoncv": [sys.executable, "-c", "import mxnet, gluoncv"]}
    best = {name: float("inf") for name in runs}
    for _ in range(args.repeat):  # alternate, so drift in machine load hits every command alike
        for name, cmd in runs.items():
            best[name] = min(best[name], _best(cmd, 1))
    for name, seconds in best.items():
        print(f"{name:<24} {seconds * 1000:7.0f} ms")
    stack = best["import mxnet, gluoncv"]
    print("(inspect's whole run draws two PNGs with matplotlib: most of its time)")
    for name in ("pack --help", "inspect start (imports)"):
        print(f"{name} / training-stack import: {best[name] / stack:.2f} (target: well under 1 s; "
              f"{'met' if best[name] < 0.5 else 'missed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
