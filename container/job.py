"""A job folder's life on this machine: its channels, a clean start, the toolkit's launch, the outcome.

Shared by every way of running the image's algorithm here: `local_run` (the toolkit in a subprocess),
`docker_run` (one container), `cluster` (several), and the tests.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

from magiccards.errors import TrainingFailed, TrainingStopped, UserError
from magiccards.files import atomic_path, writing

from .layout import channels_from_pack_dir, pipe_mode_channels

TRAINING_MODULE = "magiccards.train.entry:main"
# what the image runs for `train` (the training toolkit's own entry point), run with this Python
TOOLKIT_COMMAND = [sys.executable, "-m", "magiccards.container.entrypoint", "train"]
OPT_ML = "/opt/ml"


def job_channels(data_dir: Path, extra_channels: dict[str, Path] | None = None, input_mode: str = "File"
                 ) -> tuple[dict[str, list[Path]], dict[str, Path]]:
    """(channels for the layout, {channel: .rec to stream}) of a job on the pack folder `data_dir`.

    `train`/`validation` come from the pack folder (in Pipe mode their records stream through FIFOs and
    classes.txt travels in a File-mode channel `classes`); `extra_channels` (name -> folder, such as
    `model` or `pretrained`) are File-mode channels of that folder's files."""
    if input_mode not in ("File", "Pipe"):
        raise UserError(f"--input-mode must be File or Pipe; got {input_mode!r}")
    channels, feeds = channels_from_pack_dir(data_dir), {}
    if input_mode == "Pipe":
        channels, feeds = pipe_mode_channels(channels)
    for name, folder in (extra_channels or {}).items():
        if not Path(folder).is_dir():
            raise UserError(f"channel {name}: {folder} is not a folder")
        channels[name] = sorted(p for p in Path(folder).iterdir() if p.is_file())
    return channels, feeds


class StopSignals:
    """While a job runs: SIGTERM, SIGHUP and SIGINT are forwarded to it once (through `stop`, which asks
    the job to checkpoint and end, as SageMaker's StopTrainingJob does); the caller keeps reading the
    job's log until it ends, then calls `raise_if_stopped`. Only in the main thread (signal handlers)."""

    def __init__(self, stop):
        self.stop, self.received = stop, None
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name
            print(f"{self.received}: asking the job to write a checkpoint and stop (it may take a minute) ...",
                  file=sys.stderr, flush=True)
            self.stop()

    def raise_if_stopped(self, job_dir: Path) -> None:
        """After the job ended: Ctrl-C is a KeyboardInterrupt (exit 130), SIGTERM/SIGHUP a TrainingStopped (143)."""
        if self.received == "SIGINT":
            raise KeyboardInterrupt
        if self.received is not None:
            raise TrainingStopped(f"stopped by {self.received}: the job wrote a checkpoint in {job_dir}/checkpoints; "
                                  "run the same command again to resume")


def fresh_status(job_dir: Path) -> Path:
    """The resolved job folder, without the success or failure file of an earlier run. A job folder
    that cannot be made (under a file, read-only) is a UserError."""
    job_dir = Path(job_dir).resolve()
    with writing(f"the job folder {job_dir}"):
        job_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("output/failure", "output/success"):
            (job_dir / stale).unlink(missing_ok=True)
    return job_dir


def set_checkpoints_aside(job_dir: Path, log=print) -> Path | None:
    """`--fresh`: move the job folder's checkpoints to checkpoints-before-<time> so the job starts anew."""
    checkpoints = Path(job_dir) / "checkpoints"
    if not checkpoints.is_dir() or not any(checkpoints.iterdir()):
        return None
    aside = checkpoints.with_name(f"checkpoints-before-{time.strftime('%Y%m%d-%H%M%S')}")
    checkpoints.rename(aside)
    log(f"--fresh: the earlier checkpoints are now in {aside}")
    return aside


def toolkit_env(job_dir: Path) -> dict[str, str]:
    """The environment that makes the toolkit's `train` run our algorithm on the layout in `job_dir`."""
    return dict(os.environ, SAGEMAKER_BASE_DIR=str(job_dir), SAGEMAKER_TRAINING_MODULE=TRAINING_MODULE,
                PYTHONUNBUFFERED="1")


def start_toolkit(job_dir: Path, **popen) -> subprocess.Popen:
    """Start the toolkit's `train` entry point on the layout in `job_dir` (stdout and stderr merged, text).

    It runs in a session of its own: a terminal's Ctrl-C or hang-up reaches the caller, which forwards
    it (StopSignals) instead of killing the job mid-step."""
    return subprocess.Popen(TOOLKIT_COMMAND, env=toolkit_env(job_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **popen)


def run_toolkit(job_dir: Path, **run) -> subprocess.CompletedProcess:
    """Run the toolkit's `train` on `job_dir` to its end, capturing its log (text)."""
    return subprocess.run(TOOLKIT_COMMAND, env=toolkit_env(job_dir), capture_output=True, text=True, **run)


def failure_reason(job_dir: Path, code: int) -> str | None:
    """SageMaker's FailureReason of a finished run, None when it succeeded.

    The toolkit exits 0 on an OSError without errno, yet writes the failure file: both count."""
    failure = Path(job_dir) / "output" / "failure"
    if code == 0 and not failure.is_file():
        return None
    return failure.read_text().strip() if failure.is_file() else f"exit status {code}"


def raise_if_failed(job_dir: Path, code: int) -> None:
    reason = failure_reason(job_dir, code)
    if reason is not None:
        raise TrainingFailed(f"training failed: {reason}")


def tar_folder(folder: Path, archive: Path) -> Path:
    """`archive` (.tar.gz) holding the files of `folder` at its root, as SageMaker uploads model/ and output/data/."""
    with atomic_path(archive) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for p in sorted(Path(folder).iterdir()):
                tar.add(p, arcname=p.name)
    return archive


def stop_container(container, grace_seconds: int = 120) -> None:
    """`docker stop -t 120` in the background: SIGTERM, then SIGKILL after the grace period, as SageMaker does."""
    threading.Thread(target=container.stop, kwargs={"timeout": grace_seconds}, daemon=True).start()


def container_mounts(job_dir: Path, channels: dict[str, list[Path]]) -> dict[str, dict]:
    """Docker bind mounts of a job folder as SageMaker presents /opt/ml: config and each channel's files
    read-only, model/, output/ and checkpoints/ read-write."""
    volumes = {str(job_dir / "input" / "config"): {"bind": f"{OPT_ML}/input/config", "mode": "ro"}}
    for sub in ("model", "output", "checkpoints"):
        volumes[str(job_dir / sub)] = {"bind": f"{OPT_ML}/{sub}", "mode": "rw"}
    for name, files in channels.items():
        for f in files:
            volumes[str(Path(f).resolve())] = {"bind": f"{OPT_ML}/input/data/{name}/{Path(f).name}", "mode": "ro"}
    return volumes
