"""`magiccards train DATA_DIR`: run the training job on this machine, without Docker.

It writes the job layout the way SageMaker does, then runs the training toolkit's own `train` entry
point with `SAGEMAKER_BASE_DIR` pointing at it, streams the log, and reports the failure file.
"""
from __future__ import annotations

from pathlib import Path

from .job import (
    StopSignals,
    fresh_status,
    job_channels,
    raise_if_failed,
    set_checkpoints_aside,
    start_toolkit,
)
from .layout import write_job_layout
from .pipe_feeder import PipeFeeder


def run_local(data_dir: Path, job_dir: Path, hyperparameters: dict, extra_channels: dict[str, Path] | None = None,
              input_mode: str = "File", fresh: bool = False, log=print) -> Path:
    """Train on the pack folder `data_dir` in the job folder `job_dir`; returns the model directory.

    With `input_mode="Pipe"` the train and validation records stream through FIFOs as in SageMaker;
    `fresh` sets earlier checkpoints aside instead of resuming from them.
    """
    channels, feeds = job_channels(data_dir, extra_channels, input_mode)
    job_dir = fresh_status(job_dir)
    if fresh:
        set_checkpoints_aside(job_dir, log)
    write_job_layout(job_dir, channels, hyperparameters, pipe_channels=set(feeds))
    with PipeFeeder(job_dir / "input" / "data", feeds):
        proc = start_toolkit(job_dir)
        with StopSignals(proc.terminate) as stop:  # SIGTERM: the job writes a checkpoint and stops
            for line in proc.stdout:
                log(line.rstrip("\n"))
            code = proc.wait()
    stop.raise_if_stopped(job_dir)
    raise_if_failed(job_dir, code)
    return job_dir / "model"
