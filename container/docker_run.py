"""`magiccards train --docker`: run the training image exactly as SageMaker runs it.

The job folder is laid out like /opt/ml; the container gets it through bind mounts (config and
channels read-only, each channel holding only its own files), the hostname `algo-1`, and the
command `train`. Logs stream as they come; the exit status is honoured; at the end `model/` and
`output/data/` are tarred to `model.tar.gz` and `output.tar.gz` as SageMaker uploads them.
"""
from __future__ import annotations

import tarfile
from pathlib import Path

from magiccards.train.errors import UserError

from .docker_engine import client as docker_client
from .layout import channels_from_pack_dir, pipe_mode_channels, write_job_layout
from .pipe_feeder import PipeFeeder
from .local_run import TrainingFailed

OPT_ML = "/opt/ml"


def _volumes(job_dir: Path, channels: dict[str, list[Path]]) -> dict[str, dict]:
    volumes = {str(job_dir / "input" / "config"): {"bind": f"{OPT_ML}/input/config", "mode": "ro"}}
    for sub in ("model", "output", "checkpoints"):
        volumes[str(job_dir / sub)] = {"bind": f"{OPT_ML}/{sub}", "mode": "rw"}
    for name, files in channels.items():
        for f in files:
            volumes[str(Path(f).resolve())] = {"bind": f"{OPT_ML}/input/data/{name}/{Path(f).name}", "mode": "ro"}
    return volumes


def _tar(folder: Path, archive: Path) -> None:
    tmp = archive.with_name(f".{archive.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for p in sorted(folder.iterdir()):
            tar.add(p, arcname=p.name)
    tmp.replace(archive)


def run_docker(data_dir: Path, job_dir: Path, hyperparameters: dict, image: str = "magiccards:cpu",
               extra_channels: dict[str, Path] | None = None, input_mode: str = "File", log=print) -> Path:
    """Train in the image on the pack folder `data_dir`; returns the model directory.

    In Pipe mode the host feeds FIFOs in the job's input/data/, mounted at /opt/ml/input/data.
    """
    client = docker_client()
    try:
        client.images.get(image)
    except Exception:
        raise UserError(f"image {image} is not built here; run `make image` (or magiccards image --tag {image})") from None
    channels = channels_from_pack_dir(data_dir)
    for name, folder in (extra_channels or {}).items():
        channels[name] = sorted(p for p in Path(folder).iterdir() if p.is_file())
    job_dir = Path(job_dir).resolve()
    for stale in ("output/failure", "output/success"):
        (job_dir / stale).unlink(missing_ok=True)
    if input_mode == "Pipe":
        layout, feeds = pipe_mode_channels(channels)
        write_job_layout(job_dir, layout, hyperparameters, pipe_channels=set(feeds), link=False)
        volumes = _volumes(job_dir, {})
        volumes[str(job_dir / "input" / "data")] = {"bind": f"{OPT_ML}/input/data", "mode": "rw"}
    elif input_mode == "File":
        feeds = {}
        write_job_layout(job_dir, {name: [] for name in channels}, hyperparameters)
        volumes = _volumes(job_dir, channels)
    else:
        raise UserError(f"--input-mode must be File or Pipe; got {input_mode!r}")
    with PipeFeeder(job_dir / "input" / "data", feeds):
        container = client.containers.run(image, ["train"], hostname="algo-1", volumes=volumes,
                                          detach=True, stop_signal="SIGTERM")
        try:
            for chunk in container.logs(stream=True, follow=True):
                for line in chunk.decode(errors="replace").splitlines():
                    log(line)
            code = container.wait()["StatusCode"]
        except KeyboardInterrupt:
            container.stop(timeout=120)  # SIGTERM, then SIGKILL after 120 s, as SageMaker does
            raise
        finally:
            container.remove(force=True)
    _tar(job_dir / "model", job_dir / "model.tar.gz")
    _tar(job_dir / "output" / "data", job_dir / "output.tar.gz")
    failure = job_dir / "output" / "failure"
    if code != 0 or failure.is_file():  # the toolkit exits 0 on an OSError without errno, yet writes the failure
        reason = failure.read_text().strip() if failure.is_file() else f"exit status {code}"
        raise TrainingFailed(f"training failed: {reason}")
    return job_dir / "model"
