"""`magiccards train --docker`: run the training image exactly as SageMaker runs it.

The job folder is laid out like /opt/ml; the container gets it through bind mounts (config and
channels read-only, each channel holding only its own files), the hostname `algo-1`, and the
command `train`. Logs stream as they come; the exit status is honoured; at the end `model/` and
`output/data/` are tarred to `model.tar.gz` and `output.tar.gz` as SageMaker uploads them.
"""
from __future__ import annotations

from pathlib import Path

from docker.errors import ImageNotFound

from magiccards.errors import UserError

from .docker_engine import client as docker_client
from .job import (
    OPT_ML,
    StopSignals,
    container_mounts,
    fresh_status,
    job_channels,
    raise_if_failed,
    set_checkpoints_aside,
    stop_container,
    tar_folder,
)
from .layout import write_job_layout
from .pipe_feeder import PipeFeeder


def run_docker(data_dir: Path, job_dir: Path, hyperparameters: dict, image: str = "magiccards:cpu",
               extra_channels: dict[str, Path] | None = None, input_mode: str = "File", fresh: bool = False,
               log=print) -> Path:
    """Train in the image on the pack folder `data_dir`; returns the model directory.

    In Pipe mode the host feeds FIFOs in the job's input/data/, mounted at /opt/ml/input/data.
    """
    client = docker_client()
    try:
        client.images.get(image)
    except ImageNotFound:
        raise UserError(f"image {image} is not built here; run `make image` (or magiccards image --tag {image})") from None
    channels, feeds = job_channels(data_dir, extra_channels, input_mode)
    job_dir = fresh_status(job_dir)
    if fresh:
        set_checkpoints_aside(job_dir, log)
    if feeds:  # Pipe mode: the FIFOs and the File-mode channels' copies live in the mounted input/data
        write_job_layout(job_dir, channels, hyperparameters, pipe_channels=set(feeds), link=False)
        volumes = container_mounts(job_dir, {})
        volumes[str(job_dir / "input" / "data")] = {"bind": f"{OPT_ML}/input/data", "mode": "rw"}
    else:
        # the container gets each channel file through its own mount; the links in the job folder are for
        # the host's later steps (`magiccards export` checks a model on its job's validation records)
        write_job_layout(job_dir, channels, hyperparameters)
        volumes = container_mounts(job_dir, channels)
    with PipeFeeder(job_dir / "input" / "data", feeds):
        container = client.containers.run(image, ["train"], hostname="algo-1", volumes=volumes,
                                          detach=True, stop_signal="SIGTERM")
        try:
            with StopSignals(lambda: stop_container(container)) as stop:
                for chunk in container.logs(stream=True, follow=True):
                    for line in chunk.decode(errors="replace").splitlines():
                        log(line)
                code = container.wait()["StatusCode"]
        finally:
            container.remove(force=True)
    stop.raise_if_stopped(job_dir)
    tar_folder(job_dir / "model", job_dir / "model.tar.gz")
    tar_folder(job_dir / "output" / "data", job_dir / "output.tar.gz")
    raise_if_failed(job_dir, code)
    return job_dir / "model"
