"""Rebuilding the image does not pile up untagged images (each rebuild of the real one leaves ~3 GB)."""
import io
import time

import pytest
from docker.errors import APIError, ImageNotFound
from magiccards.container import base_image
from magiccards.container.image import VARIANT_LABEL, remove_stale_images

pytestmark = pytest.mark.docker
LABEL = "magiccards-cleanup-test.stage"  # its own label: the real image's build cache is left alone


def _build(client, stage: str, marker: str, tag=None, variant: str | None = None) -> str:
    """A tiny image labelled like one stage of the Dockerfile; `marker` makes each build distinct."""
    labels = f"LABEL {LABEL}={stage}\n" + (f"LABEL {VARIANT_LABEL}={variant}\n" if variant else "")
    dockerfile = f"FROM {base_image.DEFAULT_TAG}\n{labels}RUN echo {marker} > /marker\n"
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True)
    return image.id


def test_replaced_images_and_old_build_stages_are_removed(docker_client):
    assert base_image.exists(base_image.DEFAULT_TAG, docker_client), "run `make base-image` first"
    _remove_test_images(docker_client)  # whatever an interrupted run left
    tag = "magiccards-cleanup-test:latest"
    try:
        stamp = str(time.time_ns())
        old_stage = _build(docker_client, "build", f"a{stamp}", variant="cpu")
        other_variant = _build(docker_client, "build", f"g{stamp}", variant="gpu")  # older, but its variant's newest
        time.sleep(1.1)  # image creation times have a resolution of one second
        new_stage = _build(docker_client, "build", f"b{stamp}", variant="cpu")
        unlabelled = _build(docker_client, "build", f"u{stamp}")  # a Dockerfile older than the variant label's
        replaced = _build(docker_client, "final", f"c{stamp}", tag)
        current = _build(docker_client, "final", f"d{stamp}", tag)  # moves the tag: `replaced` is dangling now
        in_use = docker_client.containers.create(_build(docker_client, "final", f"e{stamp}"), ["true"])
        try:
            assert remove_stale_images(docker_client, LABEL) == 3
            ids = {i.id for i in docker_client.images.list(all=True)}
            assert old_stage not in ids and replaced not in ids and unlabelled not in ids
            assert new_stage in ids and current in ids  # the newest build stage stays as the next build's cache
            assert other_variant in ids  # and the other variant's: building cpu then gpu keeps both caches
            assert in_use.image.id in ids  # a container still uses it
        finally:
            in_use.remove(force=True)
    finally:
        _remove_test_images(docker_client)


def _remove_test_images(client, passes: int = 5):
    """Remove every image carrying the test's label, children before parents: the classic builder leaves one
    labelled image per Dockerfile step, and a parent cannot go while a child of it is there (409)."""
    for _ in range(passes):
        images = client.images.list(all=True, filters={"label": LABEL})
        if not images:
            return
        for image in sorted(images, key=lambda i: i.attrs["Created"], reverse=True):
            try:
                client.images.remove(image.id, force=True)
            except ImageNotFound:
                pass  # went with a child removed before it
            except APIError as e:
                if e.status_code != 409:  # 409: a child is still there; the next pass takes it
                    raise
    left = client.images.list(all=True, filters={"label": LABEL})
    assert not left, f"test images left behind: {[i.short_id for i in left]}"
