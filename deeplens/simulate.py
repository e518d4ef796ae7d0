"""`magiccards deeplens simulate FUNCTION_DIR --package FILE.tar.gz --frames DIR --out DIR`: run the
generated Lambda on this machine, as the device would, before any deployment.

The device's libraries are replaced by stand-ins that do the real work (deeplens/device_sim/): `mo`
calls the real Model Optimizer (.venv-mo), `awscam.Model` runs its IR with OpenVINO and parses results as
DeepLens documents, `awscam.getLastFrame` reads the images of a folder, `greengrasssdk` writes each
publish to OUT/published.jsonl. The project stream (the FIFO) is read too: the last annotated frame is
saved as OUT/annotated.jpg.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from magiccards.files import write_bytes_atomic, writing
from magiccards.telemetry import opt_out

from .graph import ExportError
from .model_optimizer import SETUP, find_mo
from .package import read_package

STAND_INS = Path(__file__).with_name("device_sim")
JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"


def _last_jpeg(stream: bytes) -> bytes | None:
    end = stream.rfind(JPEG_END)
    start = stream.rfind(JPEG_START, 0, end) if end > 0 else -1
    return stream[start:end + 2] if start >= 0 else None


def _read_stream(path: Path, into: list, ready: threading.Event) -> threading.Thread:
    def read():
        ready.wait()
        with open(path, "rb") as fifo:
            while True:
                chunk = fifo.read(1 << 16)
                if not chunk:
                    return
                into.append(chunk)
                if len(into) > 64:  # keep the tail: the newest frames
                    del into[:-32]

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def simulate(function: Path, archive: Path, frames: Path, out: Path, max_frames: int | None = None,
             thing: str = "deeplens_simulated", log=print) -> list[dict]:
    """Run the Lambda in `function` on the images of `frames` with the model of `archive`; returns the
    published messages (also in out/published.jsonl; the last annotated frame in out/annotated.jpg)."""
    if find_mo() is None:
        raise ExportError(f"the simulation converts the model with the Model Optimizer, which is not installed: {SETUP}")
    opt_out()  # the simulated device's awscam imports OpenVINO
    function, frames, out = (Path(p).resolve() for p in (function, frames, out))  # the function runs in its folder
    if not (function / "lambda_function.py").is_file() or not (function / "config.json").is_file():
        raise ExportError(f"{function} is not a Lambda folder (make it with `magiccards deeplens lambda`)")
    images = sorted(p for p in frames.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")) \
        if frames.is_dir() else []
    if not images:
        raise ExportError(f"{frames} holds no .jpg or .png frames")
    with writing(f"the simulation output {out}"):
        out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="magiccards-simulate-") as scratch:
        scratch = Path(scratch)
        artifacts, _ = read_package(Path(archive), scratch / "artifacts")  # the device's /opt/awscam/artifacts
        run = scratch / "function"
        run.mkdir()
        for path in function.iterdir():
            if path.is_file():
                (run / path.name).write_bytes(path.read_bytes())
        config = json.loads((run / "config.json").read_text())
        fifo = scratch / "results.mjpeg"
        os.mkfifo(fifo)
        config.update(results_fifo=str(fifo), max_frames=max_frames or len(images))
        (run / "config.json").write_text(json.dumps(config))
        published = out / "published.jsonl"
        published.unlink(missing_ok=True)
        stream: list = []
        ready = threading.Event()
        reader = _read_stream(fifo, stream, ready)
        ready.set()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(STAND_INS), os.environ.get("PYTHONPATH"))
                                                          if p),
               "AWSCAM_FRAMES": str(frames), "DEEPLENS_ARTIFACTS": str(artifacts),
               "GREENGRASS_PUBLISHED": str(published), "AWS_IOT_THING_NAME": thing}
        log(f"running {function / 'lambda_function.py'} on {config['max_frames']} frame(s) of {frames}")
        done = subprocess.run([sys.executable, str(run / "lambda_function.py")], env=env, capture_output=True,
                              text=True, cwd=run)
        if not reader.is_alive():
            reader.join()
        else:  # the function ended without opening the stream (it failed early): release the reader
            with open(fifo, "wb"):
                pass
            reader.join(5)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            raise ExportError(f"the Lambda failed: {lines[-1] if lines else done.returncode}")
    messages = [json.loads(line)["payload"] for line in published.read_text().splitlines()] if published.is_file() \
        else []
    frame = _last_jpeg(b"".join(stream))
    if frame:
        write_bytes_atomic(out / "annotated.jpg", frame)
        log(f"wrote {out / 'annotated.jpg'} (the project stream's last frame)")
    log(f"{len(messages)} message(s) published to $aws/things/{thing}/infer: {published}")
    return messages
