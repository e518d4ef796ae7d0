"""Building the training image with the docker SDK, on machines with or without a registry."""
from __future__ import annotations

import time
from pathlib import Path

import docker
from docker.errors import APIError, BuildError, ImageNotFound

from magiccards.errors import ImageBuildFailed

from . import base_image
from .docker_engine import client as docker_client

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BASE = "python:3.11-slim-bookworm"
DEFAULT_TAG = "magiccards:cpu"
GPU_TAG = "magiccards:gpu"
VARIANTS = ("cpu", "gpu")  # the Dockerfile's VARIANT; gpu: container/requirements-gpu.txt
STAGE_LABEL = "magiccards.stage"  # set by the Dockerfile on its stages
VARIANT_LABEL = "magiccards.variant"  # the build stages' VARIANT (each variant keeps its own cache)


def _available(client: docker.DockerClient, ref: str, pull: bool) -> bool:
    try:
        client.images.get(ref)
        return True
    except ImageNotFound:
        if not pull:
            return False
    try:
        repository, _, tag = ref.partition(":")
        client.images.pull(repository, tag=tag or "latest")
        return True
    except APIError:
        return False


def choose_base(client: docker.DockerClient, base: str | None, log=print) -> str:
    """The base image: `base` when given, else python:3.11-slim if present or pullable, else the local one."""
    if base:
        return base
    if _available(client, DEFAULT_BASE, pull=True):
        return DEFAULT_BASE
    log(f"{DEFAULT_BASE} cannot be pulled here; using the local base image {base_image.DEFAULT_TAG}")
    return base_image.ensure(base_image.DEFAULT_TAG, log=log)


WEIGHTS_DIR = REPO / "container" / "weights"  # the Dockerfile copies it to /opt/magiccards/weights


def stage_weights(sources: list[str], log=print) -> list[Path]:
    """Fill WEIGHTS_DIR for the next build: each source is a folder (its .params files) or a GluonCV model name
    (taken from the model store, else downloaded, checksum verified). Files of earlier builds are removed."""
    import shutil

    from magiccards.train import weights

    for old in WEIGHTS_DIR.glob("*.params"):
        old.unlink()
    staged = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files = sorted(path.glob("*.params"))
            if not files:
                raise ImageBuildFailed(f"--weights {source}: the folder holds no .params file")
        else:
            found = weights.in_folder(source, weights.gluon_store())
            files = [found] if found else [weights.download(source, WEIGHTS_DIR)]
        for f in files:
            target = WEIGHTS_DIR / f.name
            if f.resolve() != target.resolve():
                shutil.copy2(f, target)
            staged.append(target)
    if staged:
        log(f"baking {len(staged)} weight file(s) into the image: {', '.join(p.name for p in staged)} "
            f"({sum(p.stat().st_size for p in staged) / 1e6:.0f} MB)")
    return staged


def build(tag: str = DEFAULT_TAG, base: str | None = None, variant: str = "cpu",
          no_cache: bool = False, weights: list[str] | None = None, log=print) -> dict:
    """Build the Dockerfile at the repository root (VARIANT cpu or gpu); returns {'tag', 'seconds',
    'size_bytes', 'base'}."""
    if variant not in VARIANTS:
        raise ImageBuildFailed(f"image variant {variant!r}: one of {', '.join(VARIANTS)}")
    client = docker_client()
    if weights is not None:
        stage_weights(weights, log)
    chosen = choose_base(client, base, log)
    args = {"BASE_IMAGE": chosen, "VARIANT": variant}
    started = time.perf_counter()
    tail: list[str] = []
    try:
        for chunk in client.api.build(path=str(REPO), tag=tag, buildargs=args, rm=True, forcerm=True,
                                      nocache=no_cache, decode=True):
            text = chunk.get("stream") or chunk.get("status") or ""
            if "error" in chunk:
                tail.append(chunk["error"])
                raise BuildError(chunk["error"], [])
            for line in text.splitlines():
                if line.strip():
                    log(line)
                    tail = (tail + [line])[-15:]
    except (BuildError, APIError) as e:
        raise ImageBuildFailed(f"docker build of {tag} failed: {e}\n" + "\n".join(tail)) from None
    image = client.images.get(tag)
    removed = remove_stale_images(client)
    if removed:
        log(f"removed {removed} untagged image(s) that earlier builds left behind")
    return {"tag": tag, "seconds": time.perf_counter() - started, "size_bytes": image.attrs["Size"], "base": chosen}


def remove_stale_images(client: docker.DockerClient, label: str = STAGE_LABEL) -> int:
    """Remove the untagged images earlier builds of this Dockerfile left (each rebuild leaves ~3 GB):
    images a newer build replaced, and every build stage but the newest of each variant (kept, and with it the
    dependencies' stage it grew from: the next build's cache). Images are told by the `label` the Dockerfile puts
    on its stages (`build` or `final`) and by VARIANT_LABEL; images a container still uses stay. Returns how many
    were removed."""
    dangling = client.images.list(filters={"dangling": True, "label": label})
    stages = sorted((i for i in dangling if i.labels.get(label) == "build"),
                    key=lambda i: i.attrs["Created"], reverse=True)
    newest: dict[str | None, object] = {}
    for image in stages:
        newest.setdefault(image.labels.get(VARIANT_LABEL), image)
    if len(newest) > 1:
        newest.pop(None, None)  # a stage of a Dockerfile older than the variant label: replaced by the labelled ones
    kept = {image.id for image in newest.values()}
    removed = 0
    for image in [i for i in dangling if i.labels.get(label) != "build"] + [i for i in stages if i.id not in kept]:
        try:
            client.images.remove(image.id)
            removed += 1
        except APIError:
            pass  # in use by a container
    return removed
