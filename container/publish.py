"""`magiccards publish`: the training image into Amazon ECR (or any registry), pushed and its digest verified.

ECR: the repository is created when missing (scan on push; tags immutable on request), the
authorisation token logs the docker SDK in (the password goes to the engine only: never on a command
line, in a log or in an error message), the image is tagged, pushed with a progress bar per layer, and
the digest the registry holds is checked against the one the push reported (and, for ECR, against
DescribeImages). `registry=HOST:PORT` pushes to any registry instead, with the engine's own login.
"""
from __future__ import annotations

import base64
import dataclasses
from urllib.parse import urlparse

from docker.errors import APIError, DockerException, ImageNotFound

from magiccards.aws import calling, region_of
from magiccards.errors import UserError

from . import image as image_build
from .docker_engine import client as docker_client


class PublishError(UserError):
    """The image could not be pushed or its digest does not match."""


@dataclasses.dataclass(frozen=True)
class Published:
    uri: str  # REGISTRY/REPOSITORY:TAG
    digest: str  # sha256:...

    @property
    def pinned(self) -> str:
        """REGISTRY/REPOSITORY@sha256:..., the reference that never moves."""
        return f"{self.uri.rsplit(':', 1)[0]}@{self.digest}"


@dataclasses.dataclass(frozen=True)
class Login:
    registry: str  # host[:port]
    auth: dict | None  # {"username", "password"} for the engine, or None (the engine's own credentials)


def ecr_image_uri(account: str, region: str, repository: str, tag: str) -> str:
    """Where `publish` puts an image in ECR (and where `launch` looks for it by default)."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{suffix}/{repository}:{tag}"


def ensure_repository(ecr, name: str, immutable: bool = False, log=print) -> str:
    """The ECR repository `name` (created with scan on push when missing); returns its URI."""
    with calling(f"looking up ECR repository {name}"):
        try:
            return ecr.describe_repositories(repositoryNames=[name])["repositories"][0]["repositoryUri"]
        except ecr.exceptions.RepositoryNotFoundException:
            pass
    with calling(f"creating ECR repository {name}"):
        created = ecr.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": True},
                                        imageTagMutability="IMMUTABLE" if immutable else "MUTABLE")
    log(f"created ECR repository {name} (scan on push{', immutable tags' if immutable else ''})")
    return created["repository"]["repositoryUri"]


def ecr_login(ecr) -> Login:
    """The registry host and credentials of ECR's authorisation token (valid 12 hours)."""
    with calling("getting an ECR authorisation token"):
        data = ecr.get_authorization_token()["authorizationData"][0]
    username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return Login(urlparse(data["proxyEndpoint"]).netloc or data["proxyEndpoint"],
                 {"username": username, "password": password})


def _scrub(text: str, login: Login) -> str:
    secret = (login.auth or {}).get("password")
    return text.replace(secret, "<token>") if secret else text


def _explain(error: Exception) -> str:
    """The engine's own explanation of an API error (not the SDK's 'NNN Server Error for http+docker://...')."""
    return str(getattr(error, "explanation", None) or error)


def _local_image(client, tag: str, base: str | None, log):
    try:
        return client.images.get(tag)
    except ImageNotFound:
        log(f"{tag} is not built here; building it first")
        image_build.build(tag, base=base, log=log)
        return client.images.get(tag)


def push(client, local_tag: str, repository: str, tag: str, login: Login, progress: bool = True,
         log=print) -> Published:
    """Tag `local_tag` as REGISTRY/REPOSITORY:TAG, push it (a bar per layer), verify the digest."""
    target = f"{login.registry}/{repository}"
    uri = f"{target}:{tag}"
    if login.auth:
        try:
            client.login(registry=login.registry, reauth=True, **login.auth)
        except (APIError, DockerException) as e:
            raise PublishError(f"pushing {uri}: logging in to {login.registry} failed: "
                               f"{_scrub(_explain(e), login)}") from None
    try:
        client.images.get(local_tag).tag(target, tag=tag)
        try:
            digest = _push_stream(client, target, tag, login, progress)
        finally:
            if uri != local_tag:
                client.images.remove(uri, noprune=True)  # only the name pushed under; the image stays
        held = client.images.get_registry_data(uri, auth_config=login.auth).id
    except (APIError, DockerException) as e:
        raise PublishError(f"pushing {uri}: {_scrub(_explain(e), login)}") from None
    if not digest:
        raise PublishError(f"pushing {uri}: the registry reported no digest")
    if held != digest:
        raise PublishError(f"pushed {uri} as {digest}, but the registry holds {held}")
    log(f"pushed {uri} ({digest}); the registry holds the same digest")
    return Published(uri, digest)


def _push_stream(client, target: str, tag: str, login: Login, progress: bool) -> str | None:
    """Push and draw one tqdm bar per layer; returns the digest the registry reported."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}
    digest = None
    try:
        for event in client.api.push(target, tag=tag, stream=True, decode=True, auth_config=login.auth):
            if "error" in event:
                raise PublishError(f"pushing {target}:{tag}: {_scrub(event['error'], login)}")
            if "aux" in event and "Digest" in event["aux"]:
                digest = event["aux"]["Digest"]
            layer, status, detail = event.get("id"), event.get("status", ""), event.get("progressDetail") or {}
            if not layer or layer == tag or not progress:
                continue
            bar = bars.get(layer)
            if bar is None:
                bar = bars[layer] = tqdm(desc=f"layer {layer}", total=detail.get("total"), unit="B", unit_scale=True,
                                         leave=True, position=len(bars))
            if detail.get("total") and bar.total != detail["total"]:
                bar.total = detail["total"]
            if "current" in detail:
                bar.n = detail["current"]
            if status in ("Pushed", "Layer already exists", "Mounted from"):
                bar.n = bar.total or bar.n
                bar.set_postfix_str(status.lower())
            bar.refresh()
    finally:
        for bar in bars.values():
            bar.close()
    return digest


def publish(local_tag: str = image_build.DEFAULT_TAG, repository: str | None = None, registry: str | None = None,
            tag: str | None = None, immutable: bool = False, base: str | None = None, session=None,
            progress: bool = True, log=print) -> Published:
    """Build `local_tag` if missing, then push it to ECR (default) or to `registry`; returns where it went."""
    name, _, local_version = local_tag.rpartition(":") if ":" in local_tag.split("/")[-1] else (local_tag, "", "latest")
    repository = repository or name.split("/")[-1]
    tag = tag or local_version
    client = docker_client()
    _local_image(client, local_tag, base, log)
    if registry:
        return push(client, local_tag, repository, tag, Login(registry, None), progress, log)
    import boto3

    session = session or boto3.session.Session()
    region_of(session)
    ecr = session.client("ecr")
    ensure_repository(ecr, repository, immutable, log)
    login = ecr_login(ecr)
    published = push(client, local_tag, repository, tag, login, progress, log)
    with calling(f"reading back {published.uri} from ECR"):
        images = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
    if not images or images[0]["imageDigest"] != published.digest:
        raise PublishError(f"ECR lists {repository}:{tag} as {images[0]['imageDigest'] if images else 'missing'}, "
                           f"not the pushed {published.digest}")
    return published
