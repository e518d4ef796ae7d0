"""AWS the standard way, for every command that calls it (publish, upload, launch, jobs, greengrass, deeplens).

Sessions come from boto3's standard chain: profiles (`--profile` or AWS_PROFILE), the region
(`--region`, AWS_DEFAULT_REGION or the profile's), `AWS_ENDPOINT_URL` and the per-service
`AWS_ENDPOINT_URL_<SERVICE>` variables, which botocore reads itself. Nothing here names an endpoint.
AWS errors become one line that says what to do (`aws_error`); S3 URIs are read by one rule (`S3Uri`).
"""
from __future__ import annotations

import dataclasses
import re

from magiccards.errors import AwsConfigError, UserError

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# SageMaker's pattern for the names of training jobs, models, endpoint configs and endpoints
SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
INVALID_KEYS = {"InvalidClientTokenId", "UnrecognizedClientException", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}


@dataclasses.dataclass(frozen=True)
class S3Uri:
    """s3://bucket/key, the bucket name checked against S3's naming rule."""

    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, text: str, what: str = "S3 URI") -> "S3Uri":
        if not str(text).startswith("s3://"):
            raise UserError(f"{what} {text!r} is not an S3 URI such as s3://my-bucket/prefix")
        bucket, _, key = str(text)[len("s3://"):].partition("/")
        if not BUCKET_NAME.match(bucket) or ".." in bucket:
            raise UserError(f"{what} {text!r}: {bucket!r} is not a valid S3 bucket name (3 to 63 lower-case letters, "
                            "digits, '.' and '-')")
        return cls(bucket, key)

    def join(self, *parts: str) -> "S3Uri":
        key = "/".join(p.strip("/") for p in (self.key, *parts) if p.strip("/"))
        return S3Uri(self.bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def session(profile: str | None = None, region: str | None = None):
    """A boto3 session from the standard configuration; a profile that does not exist is one line."""
    import boto3
    from botocore.exceptions import ProfileNotFound

    try:
        return boto3.session.Session(profile_name=profile, region_name=region)
    except ProfileNotFound:
        raise AwsConfigError(f"AWS profile {profile!r} is not configured (see `aws configure list-profiles`)") from None


def region_of(sess) -> str:
    """The session's region, or an error saying how to set one."""
    if not sess.region_name:
        raise AwsConfigError("no AWS region: pass --region, set AWS_DEFAULT_REGION or give the profile a region")
    return sess.region_name


def aws_error(what: str, error: Exception) -> AwsConfigError:
    """The AWS error as one line that says what to do (credentials, region, the service's own message)."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        TokenRetrievalError,
    )

    if isinstance(error, NoCredentialsError):
        return AwsConfigError(f"{what}: no AWS credentials (configure a profile, AWS_PROFILE, or "
                              "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    if isinstance(error, TokenRetrievalError):
        return AwsConfigError(f"{what}: the SSO session expired; run `aws sso login` and try again")
    if isinstance(error, NoRegionError):
        return AwsConfigError(f"{what}: no AWS region (set AWS_DEFAULT_REGION or a profile's region)")
    if isinstance(error, EndpointConnectionError):
        return AwsConfigError(f"{what}: cannot reach {error.kwargs.get('endpoint_url', 'the endpoint')} (network, "
                              "region, or AWS_ENDPOINT_URL)")
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "") or str(error)
        if code.isdigit() or "<html" in message.lower():  # no AWS error body: not the service's endpoint
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", code)
            return AwsConfigError(f"{what}: HTTP {status} from {error.operation_name}'s endpoint, which does not "
                                  "answer as the AWS API (check AWS_ENDPOINT_URL and the per-service endpoints)")
        if code in EXPIRED:
            return AwsConfigError(f"{what}: the AWS session token has expired ({message}); get new credentials "
                                  "(`aws sso login`, or refresh AWS_SESSION_TOKEN) and try again")
        if code in INVALID_KEYS:
            return AwsConfigError(f"{what}: AWS does not accept these credentials ({code}: {message}); check the "
                                  "access key of the profile or environment")
        if code in DENIED:
            return AwsConfigError(f"{what}: access denied ({code}: {message}); the IAM policy in the README lists the "
                                  "permissions each command needs")
        return AwsConfigError(f"{what}: {code or 'error'}: {message}")
    return AwsConfigError(f"{what}: {error}")


def calling(what: str):
    """`with calling("uploading x"):` turns botocore's errors inside into `aws_error` lines."""
    return _Calling(what)


class _Calling:
    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        from botocore.exceptions import BotoCoreError, ClientError

        if error is not None and isinstance(error, (BotoCoreError, ClientError)):
            raise aws_error(self.what, error) from None
        return False


def bucket_region(s3, bucket: str) -> str:
    """The region of an S3 bucket; a bucket that is missing or cannot be read is one line."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        head = s3.head_bucket(Bucket=bucket)
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise AwsConfigError(f"S3 bucket {bucket} does not exist; create it first (aws s3 mb s3://{bucket})") from None
        if code in ("403", *DENIED):
            raise AwsConfigError(f"S3 bucket {bucket}: access denied (it belongs to another account, or the policy "
                                 "lacks s3:ListBucket)") from None
        raise aws_error(f"reading S3 bucket {bucket}", e) from None
    except BotoCoreError as e:
        raise aws_error(f"reading S3 bucket {bucket}", e) from None
    headers = head.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    if headers.get("x-amz-bucket-region"):
        return headers["x-amz-bucket-region"]
    with calling(f"reading the region of S3 bucket {bucket}"):
        return s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"


def validate_request(service: str, operation: str, params: dict) -> None:
    """Check a request offline against botocore's own model of the service, before any call is made.

    botocore's validator finds missing required fields, wrong types, unknown keys and `min` limits; this
    also checks what the model states but botocore leaves to the service: enums, patterns, `max` limits.
    A failure is a UserError listing every problem by its path in the request."""
    import botocore.session
    from botocore.exceptions import ParamValidationError
    from botocore.validate import validate_parameters

    shape = botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape
    problems = []
    try:
        validate_parameters(params, shape)
    except ParamValidationError as e:
        problems += [line.strip() for line in str(e.kwargs.get("report", e)).splitlines()
                     if line.strip() and not line.startswith("Parameter validation failed")]
    _walk(shape, params, operation, problems)
    if problems:
        raise UserError(f"{operation} request is not valid: " + "; ".join(dict.fromkeys(problems)))


def _walk(shape, value, path: str, problems: list[str]) -> None:
    meta = shape.metadata
    if shape.type_name == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                _walk(member, value[name], f"{path}.{name}", problems)
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path} has {len(value)} items, at most {meta['max']} allowed")
        for i, item in enumerate(value):
            _walk(shape.member, item, f"{path}[{i}]", problems)
    elif shape.type_name == "map" and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path} has {len(value)} entries, at most {meta['max']} allowed")
        for key, item in value.items():
            _walk(shape.key, key, f"{path} key {key!r}", problems)
            _walk(shape.value, item, f"{path}[{key!r}]", problems)
    elif shape.type_name == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            close = [e for e in shape.enum if value.lower() in e.lower()][:6]
            hint = f" (did you mean {', '.join(close)}?)" if close else f" (one of {', '.join(shape.enum[:12])}...)" \
                if len(shape.enum) > 12 else f" (one of {', '.join(shape.enum)})"
            problems.append(f"{path}={value!r} is not allowed{hint}")
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path} is {len(value)} characters long, at most {meta['max']} allowed")
        if meta.get("pattern"):
            try:
                ok = re.fullmatch(meta["pattern"], value, flags=re.S) is not None
            except re.error:
                ok = True
            if not ok:
                problems.append(f"{path}={value!r} does not match the pattern {meta['pattern']}")
    elif shape.type_name in ("integer", "long") and isinstance(value, int):
        if "max" in meta and value > meta["max"]:
            problems.append(f"{path}={value} is above the maximum {meta['max']}")


def follow_status(describe, what: str, status_key: str, terminal: tuple[str, ...], poll: float, log=print) -> str:
    """Poll `describe()` (a Describe* call) until its `status_key` is one of `terminal`, logging each change;
    a Failed resource raises with its FailureReason. Returns the final status."""
    import time

    last = None
    while True:
        with calling(f"describing {what}"):
            answer = describe()
        status = answer[status_key]
        if status != last:
            log(f"{what.split()[-1]}: {status}")
            last = status
        if status == "Failed":
            raise AwsConfigError(f"{what} failed: {answer.get('FailureReason', 'no reason given')}")
        if status in terminal:
            return status
        time.sleep(poll)
