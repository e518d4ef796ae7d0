"""`magiccards deeplens deploy MODEL_DIR | JOB_NAME`: everything of a DeepLens deployment AWS lets a script do.

There is no DeepLens API: a script can put the model where DeepLens imports it from and make the
inference function; the project and the deployment to the device are console steps, printed at the end
with the URIs and ARNs filled in.

1. the package (`deeplens package`) of a model directory (or a two-stage model), or of a SageMaker training job's
   `model.tar.gz` when a job name is given (DeepLens imports SageMaker models by job name: it must
   start with `deeplens-`);
2. uploaded to an S3 bucket whose name starts with `deeplens-` (the DeepLens service role reaches only
   `deeplens*` buckets), created when missing, in the region of the standard AWS configuration;
3. the Lambda (`deeplens lambda`), created or updated as `deeplens-<name>` (python3.7, the role
   `AWSDeepLensLambdaRole` looked up by name), and a version published (DeepLens deploys versions only).
"""
from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path

from magiccards.aws import BUCKET_NAME, aws_error

from .graph import ExportError
from .lambda_package import HANDLER, RUNTIME, write_lambda, zip_lambda
from .package import package

PREFIX = "deeplens-"
ROLE = "AWSDeepLensLambdaRole"


@dataclasses.dataclass
class Deployment:
    model_uri: str
    function_arn: str
    version: str
    region: str

    def console_steps(self, name: str) -> list[str]:
        return [
            f"1. DeepLens console > Models > Import model: 'Externally trained model', artifact path {self.model_uri}, "
            f"model name {name}, framework MXNet.",
            f"2. DeepLens console > Projects > Create new project: add the model {name} and the function "
            f"{self.function_arn} (version {self.version}).",
            "3. Select the project > Deploy to device > choose your DeepLens > Deploy; results arrive on the topic "
            "$aws/things/<your thing>/infer and in the project stream.",
        ]


def check_bucket_name(bucket: str) -> str:
    """The bucket name, refused unless DeepLens can read it (prefix `deeplens-`) and S3 accepts it."""
    bucket = bucket.removeprefix("s3://").split("/", 1)[0]
    if not bucket.startswith(PREFIX):
        raise ExportError(f"bucket {bucket!r}: DeepLens imports models only from buckets whose names start with "
                          f"{PREFIX!r} (its service role is limited to them); e.g. {PREFIX}{bucket}")
    if not BUCKET_NAME.match(bucket):
        raise ExportError(f"bucket {bucket!r} is not a valid S3 bucket name (lower case, digits, '.', '-')")
    return bucket


def _model_from_job(session, job: str, workdir: Path) -> Path:
    """The model.tar.gz of a SageMaker training job, downloaded into `workdir`."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not job.startswith(PREFIX):
        raise ExportError(f"training job {job!r}: DeepLens imports SageMaker models only from jobs whose names start "
                          f"with {PREFIX!r}")
    try:
        described = session.client("sagemaker").describe_training_job(TrainingJobName=job)
        uri = described["ModelArtifacts"]["S3ModelArtifacts"]
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        target = workdir / "model.tar.gz"
        session.client("s3").download_file(bucket, key, str(target))
    except (BotoCoreError, ClientError) as e:
        raise aws_error(f"reading training job {job}", e) from None
    except KeyError:
        raise ExportError(f"training job {job} has no model artifacts (did it complete?)") from None
    return target


def _ensure_bucket(s3, bucket: str, region: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **kwargs)


def _function(lambda_client, name: str, role_arn: str, code: bytes, description: str) -> tuple[str, str]:
    """Create or update the function, wait until it is ready, publish a version: (ARN, version)."""
    from botocore.exceptions import ClientError

    try:
        lambda_client.get_function(FunctionName=name)
        lambda_client.update_function_code(FunctionName=name, ZipFile=code)
        _wait(lambda_client, "function_updated_v2", name)
        lambda_client.update_function_configuration(FunctionName=name, Role=role_arn, Handler=HANDLER,
                                                    Runtime=RUNTIME, Description=description)
        _wait(lambda_client, "function_updated_v2", name)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        lambda_client.create_function(FunctionName=name, Runtime=RUNTIME, Role=role_arn, Handler=HANDLER,
                                      Code={"ZipFile": code}, Timeout=3, MemorySize=1536, Description=description)
        _wait(lambda_client, "function_active_v2", name)
    published = lambda_client.publish_version(FunctionName=name, Description=description)
    return published["FunctionArn"], published["Version"]


def _wait(lambda_client, waiter: str, name: str) -> None:
    lambda_client.get_waiter(waiter).wait(FunctionName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 90})


def deploy(source: str, bucket: str | None = None, validation: Path | None = None, function: str | None = None,
           role: str = ROLE, score_threshold: float = 0.5, session=None, classifier_validation: Path | None = None,
           log=print) -> Deployment:
    """Package `source` (a model directory, a two-stage model or a SageMaker job name), upload it, make the
    function."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, WaiterError

    if bucket is not None:
        bucket = check_bucket_name(bucket)
    if function is not None and not function.startswith(PREFIX.rstrip("-")):
        raise ExportError(f"function {function!r}: DeepLens lists only functions whose names start with 'deeplens'")
    session = session or boto3.session.Session()
    with tempfile.TemporaryDirectory(prefix="magiccards-deploy-") as scratch:
        scratch = Path(scratch)
        try:
            region = session.region_name
            if not region:
                from botocore.exceptions import NoRegionError
                raise NoRegionError()
            account = session.client("sts").get_caller_identity()["Account"]
            try:  # before anything is packaged or uploaded
                role_arn = role if role.startswith("arn:") else session.client("iam").get_role(RoleName=role)["Role"]["Arn"]
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") == "NoSuchEntity":
                    raise ExportError(f"IAM role {role} does not exist in account {account}: the DeepLens console "
                                      "creates it on first use (or pass --role with another role's name or ARN)") from None
                raise
            model_path = Path(source)
            job = None
            if not model_path.exists():
                if validation is None:
                    raise ExportError(f"{source} is neither a model directory nor (with --validation REC, the "
                                      "images its parity is checked on) a SageMaker training job name")
                job = source
                model_path = _model_from_job(session, source, scratch)
            from magiccards.model_dir import TWO_STAGE, ModelDir, open_model

            model = open_model(model_path, scratch / "model")
            prefix = model.prefix if isinstance(model, ModelDir) else TWO_STAGE
            name = job or prefix
            archive = scratch / f"{name}.tar.gz"
            package(model.path, archive, validation=validation, name=prefix, classifier_validation=classifier_validation,
                    log=log)
            bucket = bucket or check_bucket_name(f"{PREFIX}magiccards-{account}-{region}")
            s3 = session.client("s3")
            _ensure_bucket(s3, bucket, region)
            key = f"models/{name}/{archive.name}"
            s3.upload_file(str(archive), bucket, key)
            log(f"uploaded s3://{bucket}/{key}")
            folder = write_lambda(model.path, scratch / "lambda", score_threshold=score_threshold, name=prefix)
            code = zip_lambda(folder, scratch / "lambda.zip").read_bytes()
            function = function or f"{PREFIX}{re.sub(r'[^A-Za-z0-9-_]+', '-', name)}"[:64]
            arn, version = _function(session.client("lambda"), function, role_arn, code,
                                     f"DeepLens inference for {name} ({model.task})")
        except (BotoCoreError, ClientError, WaiterError) as e:
            raise aws_error("deploying to DeepLens", e) from None
    deployment = Deployment(f"s3://{bucket}/{key}", arn, version, region)
    log(f"function {arn} (version {version})")
    for line in deployment.console_steps(name):
        log(line)
    return deployment
