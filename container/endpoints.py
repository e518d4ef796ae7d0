"""`magiccards deploy`, `endpoints`, `undeploy`: a trained model behind a SageMaker real-time endpoint.

    deploy(DeployPlan(model=JOB | s3://.../model.tar.gz | MODEL_DIR, endpoint=NAME, role=ROLE), session)
      1. the model's S3 artifact: a training job's ModelArtifacts (and its image), the URI as given, or a
         local model directory packed as model.tar.gz and uploaded through `upload`'s code;
      2. the CreateModel, CreateEndpointConfig and CreateEndpoint (or UpdateEndpoint, only with --update)
         requests, checked offline against botocore's model of SageMaker before any call (instance types
         that serve, serverless memory in 1 GB steps...), then against the account (role, image in ECR,
         the artifact, the endpoint name);
      3. the calls; `--wait` follows the endpoint to InService (or its FailureReason); `--autoscale MIN:MAX`
         then registers the variant with Application Auto Scaling and a target-tracking policy.

The image serves as `docker run IMAGE serve` does (serve/), configured by the model's Environment.
"""
from __future__ import annotations

import dataclasses
import re
import tempfile
import time
from pathlib import Path

from magiccards.aws import SAGEMAKER_NAME, S3Uri, calling, follow_status, region_of, validate_request
from magiccards.errors import UserError

from .launch import check_image, role_arn
from .publish import ecr_image_uri

VARIANT = "AllTraffic"
SERVERLESS_MEMORY = range(1024, 6144 + 1, 1024)
TERMINAL = ("InService", "Failed", "OutOfService")
SCALABLE = "sagemaker:variant:DesiredInstanceCount"
INVOCATIONS_PER_INSTANCE = 70.0  # the target-tracking value SageMaker's console proposes
# serve/server.py's settings at SageMaker's own limits: an invocation has 60 s, a real-time body at most 6 MB
SERVER_SETTINGS = {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "60", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "6"}


@dataclasses.dataclass
class DeployPlan:
    """Everything an endpoint is made of, as the user chose it."""

    model: str  # training job name, s3://.../model.tar.gz, or a local model directory
    endpoint: str
    role: str  # name or ARN
    image: str | None = None  # default: the training job's image, else magiccards:cpu in this account's ECR
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    serverless: tuple[int, int] | None = None  # (memory MB, max concurrency)
    data_capture: tuple[str, int] | None = None  # (s3 URI, percent)
    upload_to: str | None = None  # s3:// prefix for a local model directory's model.tar.gz
    update: bool = False
    autoscale: tuple[int, int] | None = None
    environment: dict[str, str] = dataclasses.field(default_factory=dict)


def _pair(text: str, what: str, example: str) -> tuple[int, int]:
    first, sep, second = str(text).partition(":")
    try:
        return int(first), int(second)
    except ValueError:
        raise UserError(f"{what} {text!r}: expected {example}") from None


def parse_serverless(text: str) -> tuple[int, int]:
    return _pair(text, "--serverless", "MEMORY_MB:MAX_CONCURRENCY such as 2048:5")


def parse_autoscale(text: str) -> tuple[int, int]:
    return _pair(text, "--autoscale", "MIN:MAX instances such as 1:4")


def check_name(name: str, what: str = "endpoint") -> None:
    if not SAGEMAKER_NAME.match(name or ""):
        raise UserError(f"{name!r} is not a valid {what} name (1 to 63 letters, digits and hyphens, starting with a "
                        "letter or digit)")


def _serving_types() -> list[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    variant = model.operation_model("CreateEndpointConfig").input_shape.members["ProductionVariants"].member
    return list(variant.members["InstanceType"].enum)


def check_offline(plan: DeployPlan) -> None:
    """What can be checked without AWS; the requests themselves are checked by `requests`."""
    check_name(plan.endpoint)
    if plan.serverless:
        memory, concurrency = plan.serverless
        if memory not in SERVERLESS_MEMORY:
            raise UserError(f"--serverless memory {memory} MB: serverless endpoints take 1024 to 6144 MB in 1 GB steps "
                            "(1024, 2048, 3072, 4096, 5120, 6144)")
        if not 1 <= concurrency <= 200:
            raise UserError(f"--serverless concurrency {concurrency}: from 1 to 200")
        if plan.autoscale:
            raise UserError("--autoscale is for instance endpoints: a serverless endpoint scales by itself up to its "
                            "max concurrency")
    else:
        if plan.instance_type not in _serving_types():
            raise UserError(f"instance type {plan.instance_type!r} does not serve SageMaker endpoints (a training-only "
                            "or unknown type): choose a hosting type such as ml.m5.large, ml.c5.xlarge or ml.g4dn.xlarge")
        if not 1 <= plan.instance_count <= 100:
            raise UserError(f"--instance-count {plan.instance_count}: from 1 to 100")
    if plan.autoscale:
        low, high = plan.autoscale
        if not 1 <= low <= high:
            raise UserError(f"--autoscale {low}:{high}: MIN at least 1 and at most MAX")
    if plan.data_capture:
        uri, percent = plan.data_capture
        S3Uri.parse(uri, "--data-capture")
        if not 0 <= percent <= 100:
            raise UserError(f"--data-capture percent {percent}: from 0 to 100")


def model_request(name: str, image: str, model_data: str, role: str, environment: dict[str, str],
                  tags: dict[str, str]) -> dict:
    """The CreateModel request of our image serving `model_data` (the server's settings, then `environment`)."""
    return {"ModelName": name, "ExecutionRoleArn": role,
            "PrimaryContainer": {"Image": image, "ModelDataUrl": model_data,
                                 "Environment": {**SERVER_SETTINGS, **environment}},
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


def requests(plan: DeployPlan, model_data: str, image: str, role: str, stamp: str) -> dict[str, dict]:
    """The CreateModel, CreateEndpointConfig and CreateEndpoint requests (no AWS call)."""
    suffix = f"-{stamp}"
    base = plan.endpoint[:63 - len(suffix)].rstrip("-")
    model_name = config_name = f"{base}{suffix}"
    variant = {"VariantName": VARIANT, "ModelName": model_name}
    if plan.serverless:
        variant["ServerlessConfig"] = {"MemorySizeInMB": plan.serverless[0], "MaxConcurrency": plan.serverless[1]}
    else:
        variant.update(InstanceType=plan.instance_type, InitialInstanceCount=plan.instance_count,
                       InitialVariantWeight=1.0)
    config = {"EndpointConfigName": config_name, "ProductionVariants": [variant],
              "Tags": [{"Key": "magiccards:endpoint", "Value": plan.endpoint}]}
    if plan.data_capture:
        config["DataCaptureConfig"] = {"EnableCapture": True, "InitialSamplingPercentage": plan.data_capture[1],
                                       "DestinationS3Uri": plan.data_capture[0],
                                       "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]}
    return {
        "CreateModel": model_request(model_name, image, model_data, role, plan.environment,
                                     {"magiccards:endpoint": plan.endpoint}),
        "CreateEndpointConfig": config,
        "CreateEndpoint": {"EndpointName": plan.endpoint, "EndpointConfigName": config_name,
                           "Tags": [{"Key": "magiccards:endpoint", "Value": plan.endpoint}]},
    }


def _describe(sagemaker, operation: str, **name) -> dict | None:
    """A Describe* answer, None when the resource does not exist."""
    try:
        return getattr(sagemaker, operation)(**name)
    except sagemaker.exceptions.ClientError as e:
        error = e.response.get("Error", {})
        if error.get("Code") in ("ValidationException", "ResourceNotFound") and (
                "not" in error.get("Message", "").lower() or "could not find" in error.get("Message", "").lower()):
            return None
        raise


def model_artifact(model: str, upload_to: str | None, folder: str, session, log=print) -> tuple[str, str | None]:
    """(the S3 URI of MODEL's model.tar.gz, the training job's image or None). MODEL is a training job name, an
    s3:// URI, or a local model directory (packed and uploaded to `upload_to`/`folder`/model.tar.gz)."""
    if model.startswith("s3://"):
        uri = S3Uri.parse(model, "MODEL")
        s3 = session.client("s3")
        with calling(f"looking up {model}"):
            try:
                s3.head_object(Bucket=uri.bucket, Key=uri.key)
            except s3.exceptions.ClientError as e:
                if str(e.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                    raise UserError(f"{model} does not exist (a training job's output is "
                                    "s3://BUCKET/output/JOB/output/model.tar.gz)") from None
                raise
        return model, None
    local = Path(model)
    if local.exists():
        return _upload_model(local, upload_to, folder, session, log), None
    from .jobs import check_job_name, describe

    if "/" in model or not re.match(r"^[a-zA-Z0-9-]+$", model):
        raise UserError(f"MODEL {model!r} is neither a model directory, an s3:// URI nor a training job name")
    check_job_name(model)
    job = describe(session.client("sagemaker"), model)
    artifact = job.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    if job.get("TrainingJobStatus") != "Completed" or not artifact:
        raise UserError(f"training job {model} is {job.get('TrainingJobStatus', 'unknown')}: only a Completed "
                        "job has a model to deploy")
    return artifact, job.get("AlgorithmSpecification", {}).get("TrainingImage")


def _upload_model(folder: Path, upload_to: str | None, name: str, session, log) -> str:
    """Pack a local model directory as model.tar.gz and upload it to `upload_to`/`name`/model.tar.gz."""
    from magiccards.model_dir import open_model

    from .job import tar_folder
    from .upload import put_file

    if folder.is_file():
        raise UserError(f"{folder}: pass the model directory (deploy packs it), or an s3:// URI of its model.tar.gz")
    open_model(folder)  # refuses what is not a model directory, with its reason
    if not upload_to:
        raise UserError(f"{folder} is a local model: pass --upload-to s3://BUCKET/PREFIX for its model.tar.gz")
    target = S3Uri.parse(upload_to.rstrip("/"), "--upload-to").join(name, "model.tar.gz")
    with tempfile.TemporaryDirectory(prefix="magiccards-deploy-") as scratch:
        archive = tar_folder(folder, Path(scratch) / "model.tar.gz")
        sent = put_file(archive, target, session, progress=False, log=log)
    log(f"{'uploaded' if sent else 'already in S3'}: {target}")
    return str(target)


def deploy(plan: DeployPlan, session, wait: bool = False, poll: float = 30.0, log=print) -> dict:
    """Check, then create (or update) the endpoint; returns {'endpoint', 'model', 'config', 'status'}."""
    check_offline(plan)
    stand_in = requests(plan, "s3://offline-check/model.tar.gz", plan.image or ecr_image_uri(
        "000000000000", "us-east-1", "magiccards", "cpu"), "arn:aws:iam::000000000000:role/offline-check", "0")
    for operation, request in stand_in.items():
        validate_request("sagemaker", operation, request)
    region = region_of(session)
    sagemaker = session.client("sagemaker")
    with calling(f"looking up endpoint {plan.endpoint}"):
        existing = _describe(sagemaker, "describe_endpoint", EndpointName=plan.endpoint)
    if existing and not plan.update:
        raise UserError(f"endpoint {plan.endpoint} exists already ({existing.get('EndpointStatus')}): pass --update to "
                        "move it to this model (blue/green), or choose another --endpoint")
    if plan.update and not existing:
        raise UserError(f"--update: there is no endpoint {plan.endpoint} to update (leave --update out to create it)")
    model_data, job_image = model_artifact(plan.model, plan.upload_to, plan.endpoint, session, log)
    with calling("reading the account id (sts:GetCallerIdentity)"):
        account = session.client("sts").get_caller_identity()["Account"]
    image = plan.image or job_image or ecr_image_uri(account, region, "magiccards", "cpu")
    check_image(session, image, region)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    made = requests(plan, model_data, image, role_arn(session, plan.role), stamp)
    for operation, request in made.items():
        validate_request("sagemaker", operation, request)
    model_name = made["CreateModel"]["ModelName"]
    config_name = made["CreateEndpointConfig"]["EndpointConfigName"]
    created = []
    try:
        with calling(f"creating model {model_name}"):
            sagemaker.create_model(**made["CreateModel"])
        created.append(("delete_model", {"ModelName": model_name}))
        with calling(f"creating endpoint config {config_name}"):
            sagemaker.create_endpoint_config(**made["CreateEndpointConfig"])
        created.append(("delete_endpoint_config", {"EndpointConfigName": config_name}))
        if existing:
            with calling(f"updating endpoint {plan.endpoint}"):
                sagemaker.update_endpoint(EndpointName=plan.endpoint, EndpointConfigName=config_name)
        else:
            with calling(f"creating endpoint {plan.endpoint}"):
                sagemaker.create_endpoint(**made["CreateEndpoint"])
    except BaseException:  # an error or Ctrl-C half way: nothing of this run is left behind to list or pay for
        _remove(sagemaker, created, log)
        raise
    if existing:
        log(f"updating endpoint {plan.endpoint} to {config_name} (the old config keeps serving until the new one "
            "is InService)")
    else:
        log(f"creating endpoint {plan.endpoint} ({_capacity(plan)}) from {model_data}")
    status = None
    if wait or plan.autoscale:
        status = wait_for(sagemaker, plan.endpoint, poll, log)
        if status == "InService" and plan.autoscale:
            autoscale(session, plan.endpoint, *plan.autoscale, log=log)
    return {"endpoint": plan.endpoint, "model": model_name, "config": config_name, "status": status,
            "model_data": model_data, "image": image}


def _remove(sagemaker, created: list[tuple[str, dict]], log) -> None:
    """Delete, newest first, what a deploy that did not finish had created."""
    for operation, name in reversed(created):
        try:
            getattr(sagemaker, operation)(**name)
            log(f"removed {next(iter(name.values()))}: the deploy did not finish")
        except Exception as e:  # noqa: BLE001 - reported: the user deletes it by hand
            log(f"could not remove {next(iter(name.values()))} ({type(e).__name__}); delete it by hand")


def _capacity(plan: DeployPlan) -> str:
    if plan.serverless:
        return f"serverless, {plan.serverless[0]} MB, up to {plan.serverless[1]} at once"
    return f"{plan.instance_count} x {plan.instance_type}"


def wait_for(sagemaker, endpoint: str, poll: float = 30.0, log=print) -> str:
    """Follow the endpoint's status until it settles; a Failed endpoint raises with its FailureReason."""
    return follow_status(lambda: sagemaker.describe_endpoint(EndpointName=endpoint), f"endpoint {endpoint}",
                         "EndpointStatus", TERMINAL, poll, log)


def autoscale(session, endpoint: str, low: int, high: int, log=print) -> None:
    """Register the endpoint's variant with Application Auto Scaling and track invocations per instance."""
    scaling = session.client("application-autoscaling")
    resource = f"endpoint/{endpoint}/variant/{VARIANT}"
    with calling(f"registering {resource} with Application Auto Scaling"):
        scaling.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=SCALABLE,
                                         MinCapacity=low, MaxCapacity=high)
    with calling(f"putting the scaling policy of {resource}"):
        scaling.put_scaling_policy(
            PolicyName=f"{endpoint}-invocations", ServiceNamespace="sagemaker", ResourceId=resource,
            ScalableDimension=SCALABLE, PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": INVOCATIONS_PER_INSTANCE, "ScaleInCooldown": 300, "ScaleOutCooldown": 60,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}})
    log(f"autoscaling {endpoint}: {low} to {high} instances at {INVOCATIONS_PER_INSTANCE:g} invocations per instance "
        "a minute")


def listed(session) -> list[dict]:
    """Every endpoint with its status, instance type (or serverless memory), count and creation time."""
    sagemaker = session.client("sagemaker")
    rows = []
    with calling("listing endpoints"):
        for page in sagemaker.get_paginator("list_endpoints").paginate():
            for entry in page.get("Endpoints", []):
                row = {"name": entry["EndpointName"], "status": entry["EndpointStatus"],
                       "created": entry.get("CreationTime"), "capacity": ""}
                described = _describe(sagemaker, "describe_endpoint", EndpointName=entry["EndpointName"]) or {}
                config = _describe(sagemaker, "describe_endpoint_config",
                                   EndpointConfigName=described.get("EndpointConfigName", "-")) or {}
                for variant in config.get("ProductionVariants", [])[:1]:
                    serverless = variant.get("ServerlessConfig")
                    row["capacity"] = (f"serverless {serverless['MemorySizeInMB']} MB" if serverless else
                                       f"{variant.get('InitialInstanceCount', '?')} x {variant.get('InstanceType')}")
                rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    if not rows:
        return "no endpoints (create one with `magiccards deploy MODEL --endpoint NAME --role ROLE`)"
    width = max(len(r["name"]) for r in rows)
    lines = [f"{'endpoint':<{width}}  {'status':<14} {'capacity':<28} created"]
    for r in rows:
        created = r["created"].strftime("%Y-%m-%d %H:%M") if hasattr(r["created"], "strftime") else str(r["created"])
        lines.append(f"{r['name']:<{width}}  {r['status']:<14} {r['capacity']:<28} {created}")
    return "\n".join(lines)


def undeploy_plan(session, endpoint: str) -> dict:
    """What `undeploy` deletes: the endpoint, its config, and its models no other config uses."""
    check_name(endpoint)
    sagemaker = session.client("sagemaker")
    with calling(f"looking up endpoint {endpoint}"):
        described = _describe(sagemaker, "describe_endpoint", EndpointName=endpoint)
        if described is None:
            raise UserError(f"there is no endpoint {endpoint} (`magiccards endpoints` lists them)")
        config_name = described["EndpointConfigName"]
        config = _describe(sagemaker, "describe_endpoint_config", EndpointConfigName=config_name) or {}
        models = sorted({v["ModelName"] for v in config.get("ProductionVariants", [])})
        shared = {}
        for page in sagemaker.get_paginator("list_endpoint_configs").paginate():
            for entry in page.get("EndpointConfigs", []):
                other = entry["EndpointConfigName"]
                if other == config_name:
                    continue
                for variant in (_describe(sagemaker, "describe_endpoint_config", EndpointConfigName=other) or {}).get(
                        "ProductionVariants", []):
                    if variant["ModelName"] in models:
                        shared.setdefault(variant["ModelName"], other)
    return {"endpoint": endpoint, "config": config_name, "models": [m for m in models if m not in shared],
            "kept": shared}


def undeploy(session, plan: dict, log=print) -> None:
    """Delete what `undeploy_plan` found; say what is left."""
    sagemaker = session.client("sagemaker")
    with calling(f"deleting endpoint {plan['endpoint']}"):
        sagemaker.delete_endpoint(EndpointName=plan["endpoint"])
    log(f"deleted endpoint {plan['endpoint']}")
    with calling(f"deleting endpoint config {plan['config']}"):
        sagemaker.delete_endpoint_config(EndpointConfigName=plan["config"])
    log(f"deleted endpoint config {plan['config']}")
    for model in plan["models"]:
        with calling(f"deleting model {model}"):
            sagemaker.delete_model(ModelName=model)
        log(f"deleted model {model}")
    for model, config in plan["kept"].items():
        log(f"kept model {model}: endpoint config {config} uses it too")
