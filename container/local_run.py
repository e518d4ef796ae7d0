"""`magiccards train DATA_DIR`: run the training job on this machine, without Docker.

It writes the job layout the way SageMaker does, then runs the training toolkit's own `train` entry
point with `SAGEMAKER_BASE_DIR` pointing at it, streams the log, and reports the failure file.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from magiccards.train.errors import UserError

from .layout import channels_from_pack_dir, pipe_mode_channels, write_job_layout
from .pipe_feeder import PipeFeeder

TRAINING_MODULE = "magiccards.train.entry:main"


class TrainingFailed(UserError):
    """The job exited non-zero; the message is SageMaker's FailureReason (output/failure)."""


def run_local(data_dir: Path, job_dir: Path, hyperparameters: dict, extra_channels: dict[str, Path] | None = None,
              input_mode: str = "File", log=print) -> Path:
    """Train on the pack folder `data_dir` in the job folder `job_dir`; returns the model directory.

    With `input_mode="Pipe"` the train and validation records stream through FIFOs as in SageMaker.
    """
    channels = channels_from_pack_dir(data_dir)
    feeds: dict[str, Path] = {}
    if input_mode == "Pipe":
        channels, feeds = pipe_mode_channels(channels)
    elif input_mode != "File":
        raise UserError(f"--input-mode must be File or Pipe; got {input_mode!r}")
    for name, folder in (extra_channels or {}).items():
        channels[name] = sorted(p for p in Path(folder).iterdir() if p.is_file())
    job_dir = Path(job_dir).resolve()
    for stale in ("output/failure", "output/success"):
        (job_dir / stale).unlink(missing_ok=True)
    write_job_layout(job_dir, channels, hyperparameters, pipe_channels=set(feeds))
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(job_dir), SAGEMAKER_TRAINING_MODULE=TRAINING_MODULE,
               PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-c", "import sys; from sagemaker_training.cli.train import main; sys.exit(main())"]
    with PipeFeeder(job_dir / "input" / "data", feeds):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            for line in proc.stdout:
                log(line.rstrip("\n"))
            code = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()  # SIGTERM: the job writes a checkpoint in the job folder and stops
            proc.wait(timeout=120)
            raise
    failure = job_dir / "output" / "failure"
    if code != 0 or failure.is_file():  # the toolkit exits 0 on an OSError without errno, yet writes the failure
        reason = failure.read_text().strip() if failure.is_file() else f"exit status {code}"
        raise TrainingFailed(f"training failed: {reason}")
    return job_dir / "model"
