"""`magiccards train --docker --instance-count N`: N containers on a private Docker network.

Each host gets its own /opt/ml (JOB_DIR/algo-i) with `resourceconfig.json` naming it and all hosts,
the hostname and network alias `algo-i` (SageMaker's names), and the same channels. The algorithm
starts MXNet's parameter server roles itself (train/distributed.py); only algo-1 writes the model.
"""
from __future__ import annotations

import threading
import uuid
from pathlib import Path

from magiccards.errors import TrainingFailed, UserError

from .docker_engine import client as docker_client
from .job import (
    StopSignals,
    container_mounts,
    failure_reason,
    fresh_status,
    job_channels,
    set_checkpoints_aside,
    stop_container,
    tar_folder,
)
from .layout import write_job_layout


def run_cluster(data_dir: Path, job_dir: Path, hyperparameters: dict, instance_count: int,
                image: str = "magiccards:cpu", fresh: bool = False, log=print) -> Path:
    """Train on `instance_count` containers; returns algo-1's model directory."""
    if instance_count < 2:
        raise UserError("--instance-count must be at least 2 for a cluster")
    client = docker_client()
    channels, _ = job_channels(data_dir)
    hosts = [f"algo-{i}" for i in range(1, instance_count + 1)]
    job_dir = Path(job_dir).resolve()
    network = client.networks.create(f"magiccards-{uuid.uuid4().hex[:8]}", driver="bridge")
    containers = []
    stop = StopSignals(lambda: [stop_container(c) for c in containers])
    try:
        for host in hosts:
            host_dir = fresh_status(job_dir / host)
            if fresh:
                set_checkpoints_aside(host_dir, log)
            write_job_layout(host_dir, {name: [] for name in channels}, hyperparameters, hosts=tuple(hosts),
                             current_host=host)
            c = client.containers.create(image, ["train"], hostname=host, volumes=container_mounts(host_dir, channels),
                                         stop_signal="SIGTERM")
            client.api.disconnect_container_from_network(c.id, "bridge")
            network.connect(c, aliases=[host])
            containers.append(c)
        with stop:
            for c in containers:
                c.start()
            threads = [threading.Thread(target=_stream, args=(c, host, log), daemon=True)
                       for c, host in zip(containers, hosts)]
            for t in threads:
                t.start()
            codes = [c.wait()["StatusCode"] for c in containers]
            for t in threads:
                t.join(timeout=10)
    finally:
        for c in containers:
            c.remove(force=True)
        network.remove()
    stop.raise_if_stopped(job_dir / hosts[0])
    master = job_dir / hosts[0]
    tar_folder(master / "model", job_dir / "model.tar.gz")
    tar_folder(master / "output" / "data", job_dir / "output.tar.gz")
    bad = [(h, reason) for h, code in zip(hosts, codes) if (reason := failure_reason(job_dir / h, code)) is not None]
    if bad:
        raise TrainingFailed("training failed: " + "; ".join(f"{h}: {reason}" for h, reason in bad))
    return master / "model"


def _stream(container, host: str, log) -> None:
    for chunk in container.logs(stream=True, follow=True):
        for line in chunk.decode(errors="replace").splitlines():
            log(f"[{host}] {line}")
