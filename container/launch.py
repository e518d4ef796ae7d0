"""`magiccards launch`: a SageMaker training job of our image, every part checked before any money is spent.

`plan_job` turns the user's choices into the CreateTrainingJob request; `check_job` checks it offline
(hyperparameters against the algorithm's own specs, the request against botocore's model of
SageMaker) and then against the account (the role, the image in ECR, each channel's bucket, region and
objects); `launch` sends it. The metric regexes come from `train/reporting.py`, the only place they live.
"""
from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import PurePosixPath

from magiccards.train.hyperparameters import check as check_hyperparameters
from magiccards.train.reporting import METRIC_DEFINITIONS

from magiccards.aws import S3Uri, bucket_region, calling, region_of, validate_request
from magiccards.errors import AwsConfigError, DataError, UserError

from .publish import ecr_image_uri

JOB_PREFIX = "deeplens-"  # DeepLens imports SageMaker models only from jobs named so
RECORDIO = "application/x-recordio"
CHECKPOINTS = "/opt/ml/checkpoints"  # where train/checkpoints.py writes; SageMaker syncs it with CheckpointConfig
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
INPUT_MODES = ("File", "Pipe")
DISTRIBUTIONS = ("FullyReplicated", "ShardedByS3Key")


@dataclasses.dataclass(frozen=True)
class Channel:
    name: str
    uri: str
    content_type: str | None = RECORDIO
    mode: str | None = None  # None: the job's TrainingInputMode
    distribution: str = "FullyReplicated"
    optional: bool = False  # an upload's validation and classes channels: left out when empty

    @classmethod
    def parse(cls, text: str, default_distribution: str = "FullyReplicated") -> "Channel":
        """NAME=S3URI[,content_type=TYPE][,mode=File|Pipe][,distribution=FullyReplicated|ShardedByS3Key]"""
        name, sep, rest = text.partition("=")
        if not sep or not name:
            raise UserError(f"--channel {text!r}: expected NAME=s3://bucket/prefix[,mode=Pipe,...]")
        uri, *options = rest.split(",")
        fields = {"content_type": RECORDIO, "mode": None, "distribution": default_distribution}
        for option in options:
            key, sep, value = option.partition("=")
            if key not in fields or not sep:
                raise UserError(f"--channel {text!r}: unknown option {option!r} (content_type, mode, distribution)")
            fields[key] = value
        return cls(name, uri, **fields)

    def request(self) -> dict:
        entry = {"ChannelName": self.name, "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": self.uri, "S3DataDistributionType": self.distribution}},
            "CompressionType": "None", "RecordWrapperType": "None"}
        if self.content_type:
            entry["ContentType"] = self.content_type
        if self.mode:
            entry["InputMode"] = self.mode
        return entry


class EmptyChannel(DataError):
    """No object under a channel's S3 prefix."""


@dataclasses.dataclass
class JobPlan:
    """Everything a training job is made of, as the user chose it."""

    channels: list[Channel]
    role: str  # name or ARN
    hyperparameters: dict[str, str]
    output: str
    image: str | None = None  # default: our image in this account's ECR
    name: str | None = None
    task: str | None = None
    input_mode: str = "File"
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    volume_gb: int = 30
    max_runtime: int = 24 * 3600
    spot: bool = False
    max_wait: int | None = None
    checkpoint_uri: str | None = None
    tags: dict[str, str] = dataclasses.field(default_factory=dict)


MAX_INSTANCES = 100
MAX_RUNTIME = 28 * 24 * 3600


def channels_of_upload(data: str, distribution: str = "FullyReplicated") -> list[Channel]:
    """The channels `magiccards upload` laid out under `data` (train, validation, classes)."""
    prefix = S3Uri.parse(data.rstrip("/"), "--data")
    return [Channel("train", str(prefix.join("train")) + "/", distribution=distribution),
            Channel("validation", str(prefix.join("validation")) + "/", distribution=distribution, optional=True),
            Channel("classes", str(prefix.join("classes")) + "/", content_type="text/plain", mode="File",
                    optional=True)]


def default_job_name(task: str | None, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now or time.time()))
    return f"{JOB_PREFIX}magiccards-{task or 'job'}-{stamp}"


def metric_definitions(task: str | None) -> list[dict]:
    """The job's MetricDefinitions: the task's (both tasks' when unknown), from train/reporting.py."""
    tasks = [task] if task else list(METRIC_DEFINITIONS)
    seen, out = set(), []
    for t in tasks:
        for d in METRIC_DEFINITIONS[t]:
            if d["Name"] not in seen:
                seen.add(d["Name"])
                out.append(dict(d))
    return out


def build_request(plan: JobPlan, role_arn: str, image: str) -> dict:
    """The CreateTrainingJob request of `plan` (no AWS call)."""
    name = plan.name or default_job_name(plan.task)
    request = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": plan.input_mode,
                                   "MetricDefinitions": metric_definitions(plan.task),
                                   "EnableSageMakerMetricsTimeSeries": True},
        "RoleArn": role_arn,
        "InputDataConfig": [c.request() for c in plan.channels],
        "OutputDataConfig": {"S3OutputPath": plan.output},
        "ResourceConfig": {"InstanceType": plan.instance_type, "InstanceCount": plan.instance_count,
                           "VolumeSizeInGB": plan.volume_gb},
        "StoppingCondition": {"MaxRuntimeInSeconds": plan.max_runtime},
        "HyperParameters": {str(k): str(v) for k, v in plan.hyperparameters.items()},
        "Tags": [{"Key": k, "Value": v} for k, v in sorted({"magiccards:task": plan.task or "auto",
                                                              **plan.tags}.items())],
    }
    if plan.spot:
        request["EnableManagedSpotTraining"] = True
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = plan.max_wait or 2 * plan.max_runtime
        request["CheckpointConfig"] = {"S3Uri": plan.checkpoint_uri, "LocalPath": CHECKPOINTS}
    elif plan.checkpoint_uri:
        request["CheckpointConfig"] = {"S3Uri": plan.checkpoint_uri, "LocalPath": CHECKPOINTS}
    return request


def check_offline(plan: JobPlan) -> None:
    """Everything that can be checked without AWS: hyperparameters, channels, spot settings, S3 URIs."""
    check_hyperparameters(plan.hyperparameters, plan.task)
    if plan.input_mode not in INPUT_MODES:
        raise UserError(f"--input-mode {plan.input_mode!r}: File or Pipe")
    names = [c.name for c in plan.channels]
    if "train" not in names:
        raise UserError("the job has no train channel: pass --data s3://.../PREFIX (from `magiccards upload`) or "
                        "--channel train=s3://...")
    if len(set(names)) != len(names):
        raise UserError(f"channel names given twice: {sorted(n for n in set(names) if names.count(n) > 1)}")
    for c in plan.channels:
        S3Uri.parse(c.uri, f"channel {c.name}")
        if c.mode and c.mode not in INPUT_MODES or c.distribution not in DISTRIBUTIONS:
            raise UserError(f"channel {c.name}: mode is File or Pipe, distribution FullyReplicated or ShardedByS3Key")
    S3Uri.parse(plan.output, "--output")
    if plan.spot:
        if not plan.checkpoint_uri:
            raise UserError("a spot job needs --checkpoint-s3 s3://...: SageMaker can stop a spot instance at any "
                            "time, and only checkpoints synced to S3 let the job resume instead of starting over")
        if plan.max_wait is not None and plan.max_wait < plan.max_runtime:
            raise UserError(f"--max-wait {plan.max_wait} s must be at least --max-runtime {plan.max_runtime} s")
    if plan.checkpoint_uri:
        S3Uri.parse(plan.checkpoint_uri, "--checkpoint-s3")
    if not 1 <= plan.instance_count <= MAX_INSTANCES:
        raise UserError(f"--instance-count {plan.instance_count}: from 1 to {MAX_INSTANCES} (a larger job needs a "
                        "raised SageMaker quota first; this limit only catches a typo)")
    if not 1 <= plan.volume_gb <= 16384:
        raise UserError(f"--volume-size {plan.volume_gb}: from 1 to 16384 GB")
    if not 1 <= plan.max_runtime <= MAX_RUNTIME:
        raise UserError(f"--max-runtime {plan.max_runtime} s: from 1 s to {MAX_RUNTIME} s (28 days, SageMaker's limit)")
    # the request as it will be sent, with stand-ins for what only the account can tell (role ARN, image URI):
    # every field botocore's model describes is checked here, before any call
    validate_request("sagemaker", "CreateTrainingJob", build_request(
        plan, "arn:aws:iam::000000000000:role/offline-check",
        plan.image or ecr_image_uri("000000000000", "us-east-1", "magiccards", "cpu")))


def role_arn(session, role: str) -> str:
    """The ARN of an IAM role given by name or ARN; a missing role is one line."""
    if role.startswith("arn:"):
        return role
    iam = session.client("iam")
    with calling(f"looking up IAM role {role}"):
        try:
            return iam.get_role(RoleName=role)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            raise AwsConfigError(f"IAM role {role!r} does not exist: create a SageMaker execution role (README: "
                                 "'IAM permissions') or pass its ARN with --role") from None


def check_image(session, image: str, region: str) -> None:
    """An image in an ECR registry of this account must be there (else `publish` first)."""
    m = re.match(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([^:@]+)[:@](.+)$", image)
    if not m:
        return
    account, image_region, repository, ref = m.groups()
    if image_region != region:
        raise UserError(f"image {image} is in {image_region}, the job would run in {region}: SageMaker pulls "
                        "from the job's region (publish there, or pass --region)")
    ecr = session.client("ecr")
    ident = {"imageDigest": ref} if ref.startswith("sha256:") else {"imageTag": ref}
    with calling(f"looking up image {image} in ECR"):
        try:
            ecr.describe_images(repositoryName=repository, registryId=account, imageIds=[ident])
        except (ecr.exceptions.RepositoryNotFoundException, ecr.exceptions.ImageNotFoundException):
            raise UserError(f"image {image} is not in ECR: run `magiccards publish` first") from None


def _check_channel(s3, channel: Channel, mode: str, region: str) -> list[str]:
    """The channel's bucket exists in the job's region and its prefix holds data the mode can read."""
    uri = S3Uri.parse(channel.uri, f"channel {channel.name}")
    where = bucket_region(s3, uri.bucket)
    if where != region:
        raise UserError(f"channel {channel.name}: {channel.uri} is in {where}, the job runs in {region}; SageMaker "
                        "reads channels from the job's region only (copy the data, or pass --region " + where + ")")
    with calling(f"listing {channel.uri}"):
        listed = s3.list_objects_v2(Bucket=uri.bucket, Prefix=uri.key, MaxKeys=1000).get("Contents", [])
    keys = [o["Key"] for o in listed if not o["Key"].endswith("/")]
    if not keys:
        raise EmptyChannel(f"channel {channel.name}: nothing under {channel.uri} (run `magiccards upload PACK_DIR "
                        "s3://...` first)")
    if (channel.mode or mode) == "Pipe":
        images = [k for k in keys if PurePosixPath(k).suffix.lower() in IMAGE_SUFFIXES]
        if images:
            raise DataError(f"channel {channel.name} is in Pipe mode but {channel.uri} holds images "
                            f"({PurePosixPath(images[0]).name}, ...): Pipe mode streams RecordIO; pack the images "
                            "(`magiccards pack`) and upload the .rec, or use File mode")
        other = [k for k in keys if not k.endswith(".rec")]
        if other:
            raise DataError(f"channel {channel.name} is in Pipe mode, which streams every object under "
                            f"{channel.uri} as records, but it holds {PurePosixPath(other[0]).name}: keep only .rec "
                            "files under a Pipe-mode channel's prefix")
    return keys


def _task_of_upload(s3, channels: list[Channel]) -> str | None:
    """The task in pack-report.json next to an upload's train channel (None when there is none)."""
    train = next(c for c in channels if c.name == "train")
    uri = S3Uri.parse(train.uri)
    parent = "/".join(uri.key.rstrip("/").split("/")[:-1])
    report = f"{parent}/pack/pack-report.json" if parent else "pack/pack-report.json"
    try:
        body = s3.get_object(Bucket=uri.bucket, Key=report)["Body"].read()
        return json.loads(body).get("task")
    except Exception:
        return None


def check_job(plan: JobPlan, session, log=print) -> dict:
    """Check `plan` offline and against the account; returns the validated CreateTrainingJob request."""
    check_offline(plan)
    region = region_of(session)
    s3 = session.client("s3")
    present = []
    for channel in plan.channels:
        try:
            keys = _check_channel(s3, channel, plan.input_mode, region)
            present.append(channel)
            if channel.distribution == "ShardedByS3Key" and len(keys) < plan.instance_count:
                raise DataError(f"channel {channel.name} is ShardedByS3Key over {len(keys)} object(s) but the job has "
                                f"{plan.instance_count} instances: some would get no data (split the data into "
                                "several .rec files, or use FullyReplicated)")
        except EmptyChannel:
            if not channel.optional:
                raise
            log(f"no {channel.name} channel: nothing under {channel.uri}")
    plan.channels = present
    if plan.task is None:
        plan.task = plan.hyperparameters.get("task") or _task_of_upload(s3, plan.channels)
        check_hyperparameters(plan.hyperparameters, plan.task)
    bucket_region(s3, S3Uri.parse(plan.output).bucket)
    with calling("reading the account id (sts:GetCallerIdentity)"):
        account = session.client("sts").get_caller_identity()["Account"]
    image = plan.image or ecr_image_uri(account, region, "magiccards", "cpu")
    check_image(session, image, region)
    request = build_request(plan, role_arn(session, plan.role), image)
    validate_request("sagemaker", "CreateTrainingJob", request)
    sagemaker = session.client("sagemaker")
    try:
        sagemaker.describe_training_job(TrainingJobName=request["TrainingJobName"])
        raise UserError(f"a training job named {request['TrainingJobName']} exists already; job names are unique "
                        "per account and region (pass another --name)")
    except sagemaker.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("ValidationException", "ResourceNotFound"):
            with calling("looking up the job name"):
                raise e
    return request


def launch(plan: JobPlan, session=None, log=print) -> dict:
    """Check and create the job; returns {'name', 'arn', 'request'}."""
    import boto3

    session = session or boto3.session.Session()
    request = check_job(plan, session, log)
    if not request["TrainingJobName"].startswith(JOB_PREFIX):
        log(f"note: DeepLens imports SageMaker models only from jobs named {JOB_PREFIX}...; this one is not")
    with calling(f"creating training job {request['TrainingJobName']}"):
        arn = session.client("sagemaker").create_training_job(**request)["TrainingJobArn"]
    log(f"created training job {request['TrainingJobName']} ({request['ResourceConfig']['InstanceCount']} x "
        f"{request['ResourceConfig']['InstanceType']}{', spot' if plan.spot else ''})")
    return {"name": request["TrainingJobName"], "arn": arn, "request": request}
