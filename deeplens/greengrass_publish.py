"""`magiccards greengrass ... --publish`: upload the component's artifact to S3 and create the component
version in AWS IoT Greengrass (greengrassv2 CreateComponentVersion), then wait until it is deployable.

The clients come from the standard AWS configuration (profile, region, AWS_ENDPOINT_URL and the
per-service endpoint variables); the bucket must be in the component's region, and the devices' token
exchange role must be allowed s3:GetObject on the artifact.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from magiccards.aws import aws_error

from .greengrass import PLACEHOLDER_BUCKET, Component, GreengrassError

SETTLED = ("DEPLOYABLE", "FAILED", "DEPRECATED")


def _bucket_key(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def upload(component: Component, s3, progress: bool = True) -> str:
    """Upload the artifact zip to the URI the recipe names; returns the URI. The bucket must exist."""
    from botocore.exceptions import BotoCoreError, ClientError
    from tqdm import tqdm

    bucket, key = _bucket_key(component.artifact_uri)
    if bucket == PLACEHOLDER_BUCKET:
        raise GreengrassError("the recipe names no bucket: build the component with --bucket s3://BUCKET/PREFIX")
    size = Path(component.artifact).stat().st_size
    try:
        s3.head_bucket(Bucket=bucket)
        with tqdm(total=size, unit="B", unit_scale=True, desc="upload", disable=None if progress else True) as bar:
            s3.upload_file(str(component.artifact), bucket, key, Callback=bar.update)
        stored = s3.head_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError) as e:
        raise aws_error(f"uploading {component.artifact.name} to s3://{bucket}", e) from None
    if stored["ContentLength"] != size:
        raise GreengrassError(f"s3://{bucket}/{key} holds {stored['ContentLength']} bytes, not {size}")
    return component.artifact_uri


def create_version(component: Component, greengrass, wait_seconds: float = 120, poll: float = 2.0,
                   log=print) -> dict:
    """CreateComponentVersion with the inline recipe; waits until the service has checked the artifact
    (DEPLOYABLE) and returns {arn, state, errors}. A FAILED state (e.g. the artifact cannot be read) is a
    GreengrassError with the service's reasons."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        created = greengrass.create_component_version(inlineRecipe=json.dumps(component.recipe).encode())
        arn = created["arn"]
        state = created.get("status", {})
        deadline = time.monotonic() + wait_seconds
        while state.get("componentState") not in SETTLED and time.monotonic() < deadline:
            time.sleep(poll)
            state = greengrass.describe_component(arn=arn).get("status", {})
    except (BotoCoreError, ClientError) as e:
        raise aws_error(f"creating component {component.name} {component.version}", e) from None
    result = {"arn": arn, "state": state.get("componentState", "UNKNOWN"), "errors": state.get("errors", {})}
    if result["state"] == "FAILED":
        reasons = "; ".join(f"{k}: {v}" for k, v in result["errors"].items()) or state.get("message", "")
        raise GreengrassError(f"Greengrass could not accept {component.name} {component.version}: {reasons}")
    log(f"component {component.name} {component.version}: {result['state']} ({arn})")
    return result


def publish(component: Component, session=None, progress: bool = True, log=print) -> dict:
    """Upload and create the version with clients of `session` (default: boto3's standard chain)."""
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        session = session or boto3.session.Session()
        s3, greengrass = session.client("s3"), session.client("greengrassv2")
    except BotoCoreError as e:
        raise aws_error("connecting to AWS", e) from None
    log(f"uploaded {upload(component, s3, progress)}")
    return create_version(component, greengrass, log=log)
