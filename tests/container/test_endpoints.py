"""`deploy`, `endpoints`, `undeploy` against moto_server (SageMaker, S3, IAM, STS, ECR, Application Auto Scaling).

moto creates an endpoint InService at once (never Creating) and does not implement UpdateEndpoint (REFERENCE §10):
the update is answered by a local server speaking SageMaker's JSON protocol, and the test says so."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import JsonServiceStandIn, run_cli, without_credentials

from .test_cloud import BUCKET, ROLE, _boto, account  # noqa: F401 - the account fixture

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/magiccards:cpu"


def _model_in_s3(key: str = "models/cards/model.tar.gz") -> str:
    _boto("s3").put_object(Bucket=BUCKET, Key=key, Body=b"a model.tar.gz")
    return f"s3://{BUCKET}/{key}"


def test_a_training_jobs_model_is_deployed_listed_and_undeployed(account):  # noqa: F811
    sagemaker = _boto("sagemaker")
    assert run_cli("launch", "--data", account, "--role", ROLE, "--name", "deeplens-deploy-1").returncode == 0
    artifact = sagemaker.describe_training_job(TrainingJobName="deeplens-deploy-1")["ModelArtifacts"]["S3ModelArtifacts"]
    done = run_cli("deploy", "deeplens-deploy-1", "--endpoint", "cards-live", "--role", ROLE,
                   "--instance-type", "ml.c5.xlarge", "--instance-count", "2",
                   "--data-capture", f"s3://{BUCKET}/capture", "25", "--env", "MAGICCARDS_BACKEND=openvino:int8",
                   "--wait", "--poll", "0.1")
    assert done.returncode == 0, done.stderr
    assert "cards-live: InService" in done.stdout and "endpoint: cards-live" in done.stdout
    endpoint = sagemaker.describe_endpoint(EndpointName="cards-live")
    assert endpoint["EndpointStatus"] == "InService"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert variant["VariantName"] == "AllTraffic" and variant["InstanceType"] == "ml.c5.xlarge"
    assert variant["InitialInstanceCount"] == 2 and variant["InitialVariantWeight"] == 1.0
    assert config["DataCaptureConfig"]["InitialSamplingPercentage"] == 25
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == f"s3://{BUCKET}/capture"
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["Image"] == IMAGE  # the training job's own image serves
    assert model["PrimaryContainer"]["ModelDataUrl"] == artifact
    assert model["PrimaryContainer"]["Environment"] == {
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "60", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "6",
        "MAGICCARDS_BACKEND": "openvino:int8"}
    assert model["ExecutionRoleArn"] == f"arn:aws:iam::123456789012:role/{ROLE}"

    listed = run_cli("endpoints")
    assert listed.returncode == 0 and "cards-live" in listed.stdout and "2 x ml.c5.xlarge" in listed.stdout
    again = run_cli("deploy", "deeplens-deploy-1", "--endpoint", "cards-live", "--role", ROLE)
    assert again.returncode == 1 and "endpoint cards-live exists already" in again.stderr and "--update" in again.stderr

    unasked = subprocess.run([sys.executable, "-m", "magiccards.cli", "undeploy", "cards-live"], capture_output=True,
                             text=True, stdin=subprocess.DEVNULL)
    assert unasked.returncode == 1 and "pass --yes to confirm" in unasked.stderr
    assert sagemaker.describe_endpoint(EndpointName="cards-live")["EndpointStatus"] == "InService"  # untouched
    gone = run_cli("undeploy", "cards-live", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert f"deleted model {variant['ModelName']}" in gone.stdout
    names = [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]]
    assert "cards-live" not in names
    assert variant["ModelName"] not in [m["ModelName"] for m in sagemaker.list_models()["Models"]]
    assert endpoint["EndpointConfigName"] not in [
        c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]]


def test_a_local_model_goes_serverless_and_an_s3_model_autoscales(account, trained_classifier):  # noqa: F811
    sagemaker, s3 = _boto("sagemaker"), _boto("s3")
    done = run_cli("deploy", trained_classifier, "--endpoint", "cards-serverless", "--role", ROLE,
                   "--serverless", "2048:5", "--upload-to", f"s3://{BUCKET}/deployed")
    assert done.returncode == 0, done.stderr
    key = "deployed/cards-serverless/model.tar.gz"
    assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] > 1000  # the packed model directory
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=sagemaker.describe_endpoint(EndpointName="cards-serverless")["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]["ModelDataUrl"] == \
        f"s3://{BUCKET}/{key}"

    scaled = run_cli("deploy", _model_in_s3(), "--endpoint", "cards-scaled", "--role", ROLE, "--autoscale", "1:4",
                     "--poll", "0.1")
    assert scaled.returncode == 0, scaled.stderr
    scaling = _boto("application-autoscaling")
    target = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    mine = [t for t in target if t["ResourceId"] == "endpoint/cards-scaled/variant/AllTraffic"]
    assert mine and mine[0]["MinCapacity"] == 1 and mine[0]["MaxCapacity"] == 4
    assert mine[0]["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    policy = scaling.describe_scaling_policies(ServiceNamespace="sagemaker",
                                               ResourceId="endpoint/cards-scaled/variant/AllTraffic")["ScalingPolicies"]
    tracking = policy[0]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    for name in ("cards-serverless", "cards-scaled"):
        assert run_cli("undeploy", name, "--yes").returncode == 0


def test_each_deploy_mistake_is_one_line_before_any_money_is_spent(account, trained_classifier, monkeypatch,  # noqa: F811
                                                                     tmp_path):
    model = _model_in_s3()
    assert run_cli("deploy", model, "--endpoint", "cards-taken", "--role", ROLE).returncode == 0
    cases = {
        "a training-only instance type": ((model, "--instance-type", "ml.c5n.xlarge"), "does not serve SageMaker"),
        "serverless memory between steps": ((model, "--serverless", "1500:2"), "1024 to 6144 MB in 1 GB steps"),
        "serverless with autoscaling": ((model, "--serverless", "2048:2", "--autoscale", "1:2"), "scales by itself"),
        "an endpoint name taken": ((model, "--endpoint", "cards-taken"), "exists already"),
        "an update of nothing": ((model, "--update"), "there is no endpoint cards-new to update"),
        "a model not in S3": ((f"s3://{BUCKET}/models/none/model.tar.gz",), "does not exist"),
        "a training job that does not exist": (("deeplens-no-such-job",), "deeplens-no-such-job"),
        "an image not in ECR": ((model, "--image", IMAGE.replace(":cpu", ":gpu")), "is not in ECR"),
        "a local model without --upload-to": ((str(trained_classifier),), "pass --upload-to s3://"),
        "a folder that is no model": ((str(tmp_path),), str(tmp_path)),
        "a bad endpoint name": ((model, "--endpoint", "cards_new"), "is not a valid endpoint name"),
        "a missing role": ((model, "--role", "NoSuchRole"), "IAM role 'NoSuchRole' does not exist"),
    }
    for what, (args, message) in cases.items():
        extra = [] if "--endpoint" in args else ["--endpoint", "cards-new"]
        extra += [] if "--role" in args else ["--role", ROLE]
        done = run_cli("deploy", *args, *extra)
        assert done.returncode == 1, (what, done.stdout, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (what, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, (what, done.stderr)
    names = [e["EndpointName"] for e in _boto("sagemaker").list_endpoints()["Endpoints"]]
    assert "cards-new" not in names
    missing = run_cli("undeploy", "cards-none", "--yes")
    assert missing.returncode == 1 and "there is no endpoint cards-none" in missing.stderr
    assert run_cli("undeploy", "cards-taken", "--yes").returncode == 0
    without_credentials(monkeypatch, tmp_path)
    for args in (("deploy", model, "--endpoint", "cards-new", "--role", ROLE), ("endpoints",),
                 ("undeploy", "cards-new", "--yes")):
        done = run_cli(*args)
        assert done.returncode == 1 and "no AWS credentials" in done.stderr and "Traceback" not in done.stderr


def test_update_moves_the_endpoint_to_the_new_config(account, monkeypatch):  # noqa: F811
    """moto does not implement UpdateEndpoint (REFERENCE §10): SageMaker's side is a local server that answers as
    SageMaker does for an endpoint in service, then updating, then in service again."""
    model = _model_in_s3()
    states = iter(["Updating", "Updating", "InService"])

    def describe(body):
        return {"EndpointName": body["EndpointName"], "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:"
                "endpoint/cards-live", "EndpointConfigName": "cards-live-old", "EndpointStatus": next(states, "InService"),
                "CreationTime": 0, "LastModifiedTime": 0}

    stand_in = JsonServiceStandIn({
        "DescribeEndpoint": (200, describe),
        "CreateModel": (200, {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m"}),
        "CreateEndpointConfig": (200, {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c"}),
        "UpdateEndpoint": (200, {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/cards-live"}),
    })
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", stand_in.endpoint)
        done = run_cli("deploy", model, "--endpoint", "cards-live", "--role", ROLE, "--update", "--wait", "--poll", "0.05")
    finally:
        stand_in.close()
    assert done.returncode == 0, done.stderr
    operations = [operation for operation, _ in stand_in.calls]
    assert operations[:4] == ["DescribeEndpoint", "CreateModel", "CreateEndpointConfig", "UpdateEndpoint"]
    update = dict(stand_in.calls)["UpdateEndpoint"]
    created = dict(stand_in.calls)["CreateEndpointConfig"]
    assert update == {"EndpointName": "cards-live", "EndpointConfigName": created["EndpointConfigName"]}
    assert "cards-live: Updating" in done.stdout and "cards-live: InService" in done.stdout
    assert dict(stand_in.calls)["CreateModel"]["PrimaryContainer"]["ModelDataUrl"] == model


@pytest.mark.parametrize("reason", ["ClientError: Please ensure the model artifact is a valid tar.gz"])
def test_a_failed_endpoint_prints_its_reason(account, monkeypatch, reason):  # noqa: F811
    """An endpoint that fails to start (moto's never do): its FailureReason, one line, exit 1."""
    model = _model_in_s3()
    answers = iter([(400, {"__type": "ValidationException", "message": "Could not find endpoint \"cards-bad\"."})])

    def describe(body):
        return next(answers, (200, {"EndpointName": "cards-bad", "EndpointArn": "arn:x", "EndpointConfigName": "c",
                                    "EndpointStatus": "Failed", "FailureReason": reason, "CreationTime": 0,
                                    "LastModifiedTime": 0}))

    stand_in = JsonServiceStandIn({
        "DescribeEndpoint": (200, describe),
        "CreateModel": (200, {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m"}),
        "CreateEndpointConfig": (200, {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c"}),
        "CreateEndpoint": (200, {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/cards-bad"}),
    })
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", stand_in.endpoint)
        done = run_cli("deploy", model, "--endpoint", "cards-bad", "--role", ROLE, "--wait", "--poll", "0.05")
    finally:
        stand_in.close()
    assert done.returncode == 1 and f"endpoint cards-bad failed: {reason}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_deploy_that_fails_half_way_leaves_nothing_behind(account, monkeypatch):  # noqa: F811
    """CreateEndpoint refused (a quota, here answered by a SageMaker stand-in): the model and config this run
    created are deleted again, and the error is one line."""
    model = _model_in_s3()
    stand_in = JsonServiceStandIn({
        "DescribeEndpoint": (400, {"__type": "ValidationException", "message": "Could not find endpoint \"x\"."}),
        "CreateModel": (200, {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m"}),
        "CreateEndpointConfig": (200, {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c"}),
        "CreateEndpoint": (400, {"__type": "ResourceLimitExceeded",
                                 "message": "The account-level service limit 'ml.m5.large for endpoint usage' is 0"}),
        "DeleteEndpointConfig": (200, {}), "DeleteModel": (200, {}),
    })
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", stand_in.endpoint)
        done = run_cli("deploy", model, "--endpoint", "cards-quota", "--role", ROLE)
    finally:
        stand_in.close()
    assert done.returncode == 1 and "ResourceLimitExceeded" in done.stderr and "Traceback" not in done.stderr
    calls = dict(stand_in.calls)
    assert [op for op, _ in stand_in.calls][-2:] == ["DeleteEndpointConfig", "DeleteModel"]
    assert calls["DeleteModel"] == {"ModelName": calls["CreateModel"]["ModelName"]}
    assert calls["DeleteEndpointConfig"] == {"EndpointConfigName": calls["CreateEndpointConfig"]["EndpointConfigName"]}


def test_throttling_is_retried_with_backoff_then_one_line(aws, monkeypatch):
    """SageMaker throttling every call (a stand-in: moto never throttles): botocore's standard retries back off and
    try again, as many times as the standard configuration says (AWS_MAX_ATTEMPTS), then one line."""
    stand_in = JsonServiceStandIn({"*": (400, {"__type": "ThrottlingException", "message": "Rate exceeded"})})
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", stand_in.endpoint)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
        done = run_cli("endpoints")
    finally:
        stand_in.close()
    assert done.returncode == 1 and "ThrottlingException: Rate exceeded" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert [op for op, _ in stand_in.calls] == ["ListEndpoints"] * 3


def test_access_denied_is_one_line_for_every_hosting_verb(account, monkeypatch):  # noqa: F811
    """SageMaker refusing a missing permission (a stand-in: moto allows everything)."""
    stand_in = JsonServiceStandIn({"*": (400, {"__type": "AccessDeniedException", "message": "User: arn:aws:iam::"
                                               "123456789012:user/ci is not authorized to perform: sagemaker:X"})})
    model = _model_in_s3()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", stand_in.endpoint)
        for args in (("deploy", model, "--endpoint", "cards-x", "--role", ROLE), ("endpoints",),
                     ("undeploy", "cards-x", "--yes"), ("transform-results", "cards-x", "--out", "/tmp/never"),
                     ("tune", account, "--role", ROLE, "--objective", "validation:accuracy", "--range",
                      "learning_rate=0.001:0.01")):
            done = run_cli(*args)
            assert done.returncode == 1 and "access denied" in done.stderr, (args, done.stderr)
            assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    finally:
        stand_in.close()
