"""Connecting to the Docker engine, with a message that says what to do when none answers."""
from __future__ import annotations

import docker
from docker.errors import DockerException

from magiccards.errors import DockerUnavailable


def client() -> docker.DockerClient:
    """A docker SDK client for the engine named by DOCKER_HOST (default: the local socket)."""
    try:
        c = docker.from_env()
        c.ping()
        return c
    except DockerException as e:
        raise DockerUnavailable(
            f"no Docker engine answers ({e}); start one (`make docker` installs docker.io and starts dockerd) "
            "or set DOCKER_HOST") from None
