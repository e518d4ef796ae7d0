"""AWS errors as one line a user can act on, for the commands that call AWS (greengrass, deeplens deploy)."""
from __future__ import annotations

from magiccards.errors import AwsConfigError


def aws_error(what: str, error: Exception) -> AwsConfigError:
    """The AWS error as one line that says what to do (credentials, region, the service's own message)."""
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    if isinstance(error, NoCredentialsError):
        return AwsConfigError(f"{what}: no AWS credentials (configure a profile, AWS_PROFILE, or "
                              "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    if isinstance(error, NoRegionError):
        return AwsConfigError(f"{what}: no AWS region (set AWS_DEFAULT_REGION or a profile's region)")
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "") or str(error)
        if code.isdigit() or "<html" in message.lower():  # no AWS error body: not the service's endpoint
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", code)
            return AwsConfigError(f"{what}: HTTP {status} from {error.operation_name}'s endpoint, which does not "
                                  "answer as the AWS API (check AWS_ENDPOINT_URL and the per-service endpoints)")
        return AwsConfigError(f"{what}: {code or 'error'}: {message}")
    return AwsConfigError(f"{what}: {error}")
