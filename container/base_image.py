"""The local base image: a Debian bookworm root file system with Python 3.11, built without a registry.

No registry can be pulled from on these machines, so `docker build FROM python:3.11-slim` cannot
work. `debootstrap` builds a minimal Debian into a folder; the host's CA bundle is copied in (package
downloads from inside containers pass a TLS-intercepting proxy that the host trusts); the folder is
imported as an image with the docker SDK. With a registry available the Dockerfile's default base
is used instead and this module is not needed.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import docker
from docker.errors import ImageNotFound

from magiccards.errors import ImageBuildFailed

from .docker_engine import client as docker_client

DEFAULT_TAG = "magiccards/base:bookworm"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_CHANGES = ["ENV LANG=C.UTF-8", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 'CMD ["python3"]']


def exists(tag: str = DEFAULT_TAG, client: docker.DockerClient | None = None) -> bool:
    try:
        (client or docker_client()).images.get(tag)
        return True
    except ImageNotFound:
        return False


def build(tag: str = DEFAULT_TAG, client: docker.DockerClient | None = None, log=print) -> str:
    """Debootstrap a minimal bookworm with Python, trust the host's CAs, import it as `tag`."""
    if shutil.which("debootstrap") is None:
        raise ImageBuildFailed("debootstrap is not installed; run `make docker` (apt-get install debootstrap)")
    client = client or docker_client()
    with tempfile.TemporaryDirectory(prefix="magiccards-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap {SUITE} into {rootfs} (about a minute) ...")
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(rootfs)],
             "debootstrap (needs root and Debian's package mirror)")
        if HOST_CA_BUNDLE.is_file():
            target = rootfs / HOST_CA_BUNDLE.relative_to("/")
            target.unlink(missing_ok=True)  # it may be a symlink inside the root file system
            shutil.copyfile(HOST_CA_BUNDLE, target)
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        archive = Path(tmp) / "rootfs.tar"
        log(f"importing {archive.name} as {tag} ...")
        _run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], "packing the root file system")
        repository, _, version = tag.partition(":")
        client.api.import_image_from_file(str(archive), repository=repository, tag=version or "latest",
                                          changes=IMAGE_CHANGES)
    return tag


def _run(cmd: list[str], what: str) -> None:
    """Run a build step; its failure is an ImageBuildFailed holding the last lines it printed."""
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    except subprocess.CalledProcessError as e:
        tail = "\n".join((e.stderr or "").strip().splitlines()[-10:])
        raise ImageBuildFailed(f"building the base image failed at {what} (exit status {e.returncode}):\n{tail}") from None
    except OSError as e:
        raise ImageBuildFailed(f"building the base image failed at {what}: {e}") from None


def ensure(tag: str = DEFAULT_TAG, log=print) -> str:
    """Build the base image unless it exists already; return its tag."""
    client = docker_client()
    if exists(tag, client):
        log(f"base image {tag} is present")
        return tag
    return build(tag, client, log)
