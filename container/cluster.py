"""`magiccards train --docker --instance-count N`: N containers on a private Docker network.

Each host gets its own /opt/ml (JOB_DIR/algo-i) with `resourceconfig.json` naming it and all hosts,
the hostname and network alias `algo-i` (SageMaker's names), and the same channels. The algorithm
starts MXNet's parameter server roles itself (train/distributed.py); only algo-1 writes the model.
"""
from __future__ import annotations

import threading
import uuid
from pathlib import Path

from magiccards.train.errors import UserError

from .docker_engine import client as docker_client
from .docker_run import _tar, _volumes
from .layout import channels_from_pack_dir, write_job_layout
from .local_run import TrainingFailed


def run_cluster(data_dir: Path, job_dir: Path, hyperparameters: dict, instance_count: int,
                image: str = "magiccards:cpu", log=print) -> Path:
    """Train on `instance_count` containers; returns algo-1's model directory."""
    if instance_count < 2:
        raise UserError("--instance-count must be at least 2 for a cluster")
    client = docker_client()
    channels = channels_from_pack_dir(data_dir)
    hosts = [f"algo-{i}" for i in range(1, instance_count + 1)]
    job_dir = Path(job_dir).resolve()
    network = client.networks.create(f"magiccards-{uuid.uuid4().hex[:8]}", driver="bridge")
    containers = []
    try:
        for host in hosts:
            host_dir = job_dir / host
            for stale in ("output/failure", "output/success"):
                (host_dir / stale).unlink(missing_ok=True)
            write_job_layout(host_dir, {name: [] for name in channels}, hyperparameters, hosts=tuple(hosts),
                             current_host=host)
            c = client.containers.create(image, ["train"], hostname=host, volumes=_volumes(host_dir, channels),
                                         stop_signal="SIGTERM")
            client.api.disconnect_container_from_network(c.id, "bridge")
            network.connect(c, aliases=[host])
            containers.append(c)
        for c in containers:
            c.start()
        threads = [threading.Thread(target=_stream, args=(c, host, log), daemon=True) for c, host in zip(containers, hosts)]
        for t in threads:
            t.start()
        codes = [c.wait()["StatusCode"] for c in containers]
        for t in threads:
            t.join(timeout=10)
    except KeyboardInterrupt:
        for c in containers:
            c.stop(timeout=120)
        raise
    finally:
        for c in containers:
            c.remove(force=True)
        network.remove()
    master = job_dir / hosts[0]
    _tar(master / "model", job_dir / "model.tar.gz")
    _tar(master / "output" / "data", job_dir / "output.tar.gz")
    failures = [(h, job_dir / h / "output" / "failure") for h in hosts]
    bad = [(h, f.read_text().strip() if f.is_file() else f"exit status {code}")
           for (h, f), code in zip(failures, codes) if code != 0 or f.is_file()]
    if bad:
        raise TrainingFailed("training failed: " + "; ".join(f"{h}: {reason}" for h, reason in bad))
    return master / "model"


def _stream(container, host: str, log) -> None:
    for chunk in container.logs(stream=True, follow=True):
        for line in chunk.decode(errors="replace").splitlines():
            log(f"[{host}] {line}")
