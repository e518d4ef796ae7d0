"""The cloud path against real local servers: moto_server (S3, IAM, STS, ECR, SageMaker, CloudWatch Logs) and
Debian's docker-registry. Where moto does not simulate something (a job in progress, StopTrainingJob, an expired
token) a local HTTP server answers as the AWS service does, and the test says so."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import JsonServiceStandIn, run_cli, without_credentials

ROLE = "MagiccardsSageMakerRole"
BUCKET = "cards-data-test"


def _boto(service: str, region: str = "us-east-1"):
    import boto3

    return boto3.session.Session(region_name=region).client(service)


@pytest.fixture()
def account(aws, packed_cards):
    """moto holding what a user sets up once: a bucket with an upload of packed_cards, a role, the image in ECR."""
    s3 = _boto("s3")
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    iam = _boto("iam")
    try:
        iam.get_role(RoleName=ROLE)
    except iam.exceptions.NoSuchEntityException:
        iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
                                                    "Action": "sts:AssumeRole"}]}))
    ecr = _boto("ecr")
    try:
        ecr.create_repository(repositoryName="magiccards")
    except ecr.exceptions.RepositoryAlreadyExistsException:
        pass
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                                      "digest": "sha256:" + "0" * 64}, "layers": []})
    if not ecr.list_images(repositoryName="magiccards")["imageIds"]:
        ecr.put_image(repositoryName="magiccards", imageManifest=manifest, imageTag="cpu")
    done = run_cli("upload", packed_cards, f"s3://{BUCKET}/cards", "--no-progress")
    assert done.returncode == 0, done.stderr
    return f"s3://{BUCKET}/cards"


# ---------------------------------------------------------------------------------------------- publish
@pytest.mark.docker
def test_publish_pushes_to_a_real_registry_and_the_image_pulls_back(registry, docker_client):
    done = run_cli("publish", "--registry", registry, "--repository", "cards-test", "--remote-tag", "t1")
    assert done.returncode == 0, done.stderr
    uri = f"{registry}/cards-test:t1"
    assert f"image URI: {uri}" in done.stdout
    pinned = next(line.split()[-1] for line in done.stdout.splitlines() if line.startswith("pinned:"))
    digest = pinned.split("@")[1]
    assert "layer" in done.stderr  # a progress bar per layer
    import urllib.request
    tags = json.load(urllib.request.urlopen(f"http://{registry}/v2/cards-test/tags/list"))
    assert tags["tags"] == ["t1"]
    assert uri not in docker_client.images.get("magiccards:cpu").tags  # publish leaves no extra name behind
    pulled = docker_client.images.pull(f"{registry}/cards-test", tag="t1")
    assert pinned in pulled.attrs["RepoDigests"]
    local = docker_client.images.get("magiccards:cpu")
    assert pulled.id == local.id  # the same image, layer for layer
    docker_client.images.remove(uri, noprune=True)
    assert uri not in docker_client.images.get("magiccards:cpu").tags
    again = run_cli("publish", "--registry", registry, "--repository", "cards-test", "--remote-tag", "t1",
                    "--no-progress")
    assert again.returncode == 0 and digest in again.stdout


@pytest.mark.docker
def test_publish_to_ecr_creates_the_repository_and_never_shows_the_token(aws):
    """moto has no registry API (REFERENCE §8): the repository and token are real moto answers; the push to the
    token's proxy endpoint (an amazonaws.com host, unreachable here) must fail in one line with no token in it."""
    done = run_cli("publish", "--repository", "cards-ecr", "--no-progress")
    repository = _boto("ecr").describe_repositories(repositoryNames=["cards-ecr"])["repositories"][0]
    assert repository["imageScanningConfiguration"]["scanOnPush"] is True
    assert repository["imageTagMutability"] == "MUTABLE"
    token = _boto("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    password = base64.b64decode(token).decode().partition(":")[2]
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "error: pushing 123456789012.dkr.ecr.us-east-1.amazonaws.com/cards-ecr:cpu" \
        in done.stderr
    assert password not in done.stdout + done.stderr and token not in done.stdout + done.stderr
    immutable = run_cli("publish", "--repository", "cards-immutable", "--immutable", "--no-progress")
    assert immutable.returncode == 1
    described = _boto("ecr").describe_repositories(repositoryNames=["cards-immutable"])["repositories"][0]
    assert described["imageTagMutability"] == "IMMUTABLE"


# ---------------------------------------------------------------------------------------------- upload
def test_upload_lays_out_channels_and_skips_unchanged_files(aws, packed_cards, tmp_path):
    s3 = _boto("s3")
    s3.create_bucket(Bucket="cards-upload-test")
    data = tmp_path / "pack"
    data.mkdir()
    for f in packed_cards.iterdir():
        if f.is_file():
            (data / f.name).write_bytes(f.read_bytes())
    done = run_cli("upload", data, "s3://cards-upload-test/run1", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "channel train: s3://cards-upload-test/run1/train/" in done.stdout
    assert "channel classes: s3://cards-upload-test/run1/classes/" in done.stdout
    keys = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket="cards-upload-test")["Contents"]}
    assert keys["run1/train/train.rec"] == (data / "train.rec").stat().st_size
    assert {"run1/train/train.rec", "run1/validation/validation.rec", "run1/classes/classes.txt",
            "run1/pack/train.lst", "run1/pack/train.idx", "run1/pack/pack-report.json"} <= set(keys)
    assert [k for k in keys if k.startswith("run1/train/")] == ["run1/train/train.rec"]  # Pipe mode streams it all
    head = s3.head_object(Bucket="cards-upload-test", Key="run1/train/train.rec")
    assert head["Metadata"]["sha256"] == hashlib.sha256((data / "train.rec").read_bytes()).hexdigest()
    again = run_cli("upload", data, "s3://cards-upload-test/run1", "--no-progress")
    assert again.returncode == 0 and "uploaded 0 file(s)" in again.stderr + again.stdout
    (data / "classes.txt").write_text((data / "classes.txt").read_text() + "\n")
    changed = run_cli("upload", data, "s3://cards-upload-test/run1", "--no-progress")
    assert "uploaded 1 file(s)" in changed.stdout + changed.stderr
    missing = run_cli("upload", data, "s3://no-such-bucket-here/x", "--no-progress")
    assert missing.returncode == 1 and "no-such-bucket-here does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    notpack = run_cli("upload", tmp_path, "s3://cards-upload-test/x", "--no-progress")
    assert notpack.returncode == 1 and "no train.rec" in notpack.stderr


def test_an_interrupted_upload_resumes_with_the_parts_already_sent(aws, tmp_path):
    """A real Ctrl-C (SIGINT) to `magiccards upload` in the middle of a multipart upload, then the same command."""
    s3 = _boto("s3")
    s3.create_bucket(Bucket="cards-resume-test")
    data = tmp_path / "pack"
    data.mkdir()
    big = data / "train.rec"
    with open(big, "wb") as f:
        for i in range(40):
            f.write(hashlib.sha256(str(i).encode()).digest() * (8 * 1024 * 1024 // 32))  # 320 MiB, 20 parts
    (data / "classes.txt").write_text("a\nb\n")
    process = subprocess.Popen([sys.executable, "-m", "magiccards.cli", "upload", str(data),
                                "s3://cards-resume-test/big", "--no-progress"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    parts = []
    while time.monotonic() < deadline and process.poll() is None:
        uploads = s3.list_multipart_uploads(Bucket="cards-resume-test").get("Uploads", [])
        if uploads:
            parts = s3.list_parts(Bucket="cards-resume-test", Key=uploads[0]["Key"],
                                  UploadId=uploads[0]["UploadId"]).get("Parts", [])
            if len(parts) >= 2:
                process.send_signal(signal.SIGINT)
                break
        time.sleep(0.05)
    out, err = process.communicate(timeout=60)
    assert len(parts) >= 2, "the upload finished before it could be interrupted"
    assert process.returncode == 130 and "run the same command again to resume" in out + err
    assert "Traceback" not in err
    assert "Contents" not in s3.list_objects_v2(Bucket="cards-resume-test", Prefix="big/train/")
    done = run_cli("upload", data, "s3://cards-resume-test/big", "--no-progress")
    assert done.returncode == 0, done.stderr
    resumed = [line for line in (done.stdout + done.stderr).splitlines() if "resuming" in line]
    assert resumed and int(resumed[0].split(": ")[1].split()[0]) >= 2
    assert "checked against the file" not in resumed[0]  # started here from this very file: its parts not re-read
    head = s3.head_object(Bucket="cards-resume-test", Key="big/train/train.rec")
    assert head["ContentLength"] == big.stat().st_size and head["ETag"].endswith('-20"')
    body = s3.get_object(Bucket="cards-resume-test", Key="big/train/train.rec")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(big.read_bytes()).hexdigest()
    assert not s3.list_multipart_uploads(Bucket="cards-resume-test").get("Uploads")
    # the digest, computed on the one pass that sent the parts, is the object's tag; the same folder is skipped
    tags = s3.get_object_tagging(Bucket="cards-resume-test", Key="big/train/train.rec")["TagSet"]
    assert tags == [{"Key": "sha256", "Value": hashlib.sha256(big.read_bytes()).hexdigest()}]
    again = run_cli("upload", data, "s3://cards-resume-test/big", "--no-progress")
    assert again.returncode == 0 and "uploaded 0 file(s), 2 already there" in again.stdout + again.stderr


def test_a_file_changed_since_its_upload_was_cut_short_is_sent_whole(aws, tmp_path):
    """Parts left in S3 by an interrupted upload of an earlier version of the file: the part that differs is
    found on the one pass over the file, that upload is aborted, and the file goes up whole and right."""
    s3 = _boto("s3")
    s3.create_bucket(Bucket="cards-changed-test")
    data = tmp_path / "pack"
    data.mkdir()
    part = 5 * 1024 * 1024
    old = b"".join(bytes([i]) * part for i in range(4))
    (data / "train.rec").write_bytes(old)
    key = "run/train/train.rec"
    upload_id = s3.create_multipart_upload(Bucket="cards-changed-test", Key=key)["UploadId"]
    from magiccards.container.digests import identity, remember_upload

    remember_upload(data / "train.rec", identity(data / "train.rec"), upload_id)  # started here, from `old`
    stat = (data / "train.rec").stat()
    (data / "train.rec").write_bytes(old[:2 * part] + b"x" * (2 * part))  # parts 3 and 4 changed since
    os.utime(data / "train.rec", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with its time set back
    for number in (1, 3):  # what the interrupted upload had sent: part 1 still matches, part 3 does not
        s3.upload_part(Bucket="cards-changed-test", Key=key, UploadId=upload_id, PartNumber=number,
                       Body=old[(number - 1) * part:number * part])
    from magiccards.container.upload import upload

    lines = []
    upload(data, "s3://cards-changed-test/run", part_size=part, progress=False, log=lines.append)
    assert any("resuming the upload of train.rec: 2 part(s)" in line and "checked against the file" in line
               for line in lines), lines
    assert any("changed since its upload was cut short" in line for line in lines), lines
    body = s3.get_object(Bucket="cards-changed-test", Key=key)["Body"].read()
    assert body == (data / "train.rec").read_bytes()
    assert not s3.list_multipart_uploads(Bucket="cards-changed-test").get("Uploads")


def test_a_remembered_digest_is_used_only_for_the_untouched_file(tmp_path):
    """upload's local SHA-256 is remembered by the file's identity: a rewrite with the same size and
    modification time set back still changes its status-change time, and the digest is computed again."""
    from magiccards.container.digests import cache_file, sha256_of

    path = tmp_path / "train.rec"
    path.write_bytes(b"a" * 1000)
    first = sha256_of(path)
    assert first == hashlib.sha256(b"a" * 1000).hexdigest()
    assert json.loads(cache_file().read_text())[str(path)]["sha256"] == first
    assert sha256_of(path) == first
    stat = path.stat()
    time.sleep(0.01)
    path.write_bytes(b"b" * 1000)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same modification time
    assert sha256_of(path) == hashlib.sha256(b"b" * 1000).hexdigest()
    cache_file().write_text("{not json")  # a damaged cache is ignored
    assert sha256_of(path) == hashlib.sha256(b"b" * 1000).hexdigest()


# ---------------------------------------------------------------------------------------------- launch
def test_launch_sends_the_request_field_by_field(account):
    _boto("s3").put_object(Bucket=BUCKET, Key="weights/resnet18_v1b-2d9d980c.params", Body=b"weights")
    done = run_cli("launch", "--data", account, "--role", ROLE, "--name", "deeplens-cards-launch-1",
                   "--pretrained", f"s3://{BUCKET}/weights/",
                   "--instance-type", "ml.g4dn.xlarge", "--instance-count", "2", "--input-mode", "Pipe",
                   "--max-runtime", "2h", "--spot", "--max-wait", "3h", "--checkpoint-s3", f"s3://{BUCKET}/ckpt",
                   "--tag", "team=cards", "--epochs", "3", "--network", "resnet18_v1b", "--image_shape", "3,32,32")
    assert done.returncode == 0, done.stderr
    assert "training job: deeplens-cards-launch-1" in done.stdout
    job = _boto("sagemaker").describe_training_job(TrainingJobName="deeplens-cards-launch-1")
    assert job["AlgorithmSpecification"]["TrainingImage"] == \
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/magiccards:cpu"
    assert job["AlgorithmSpecification"]["TrainingInputMode"] == "Pipe"
    assert job["RoleArn"] == f"arn:aws:iam::123456789012:role/{ROLE}"
    channels = {c["ChannelName"]: c for c in job["InputDataConfig"]}
    assert set(channels) == {"train", "validation", "classes", "pretrained"}
    assert channels["pretrained"]["InputMode"] == "File"
    assert channels["pretrained"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/weights/"
    assert channels["train"]["DataSource"]["S3DataSource"] == {
        "S3DataType": "S3Prefix", "S3Uri": f"{account}/train/", "S3DataDistributionType": "FullyReplicated"}
    assert channels["train"]["ContentType"] == "application/x-recordio"
    assert channels["classes"]["InputMode"] == "File"  # classes.txt is a file even in a Pipe-mode job
    assert job["HyperParameters"] == {"epochs": "3", "network": "resnet18_v1b", "image_shape": "3,32,32"}
    assert job["ResourceConfig"] == {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30}
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 10800}
    assert job["EnableManagedSpotTraining"] is True
    assert job["CheckpointConfig"] == {"S3Uri": f"s3://{BUCKET}/ckpt", "LocalPath": "/opt/ml/checkpoints"}
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/output"
    tags = _boto("sagemaker").list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    assert {"Key": "team", "Value": "cards"} in tags and {"Key": "magiccards:task", "Value": "classification"} in tags


def test_the_request_carries_the_metric_regexes_of_the_training_log(account):
    """moto replaces MetricDefinitions with its own (REFERENCE §8): the request itself is checked here, and each
    regex against a line the job really logs."""
    import boto3
    from magiccards.container.launch import JobPlan, channels_of_upload, check_job
    from magiccards.train.reporting import epoch_lines

    plan = JobPlan(channels=channels_of_upload(account), role=ROLE, hyperparameters={"epochs": "2"},
                   output=f"s3://{BUCKET}/output")
    request = check_job(plan, boto3.session.Session(), log=lambda line: None)
    assert plan.task == "classification"  # read from the upload's pack-report.json
    assert request["TrainingJobName"].startswith("deeplens-magiccards-classification-")
    import re
    lines = epoch_lines("classification", 0, {"speed": 10.0, "seconds": 1.0, "train_accuracy": 0.5,
                                              "train_loss": 1.2, "validation_accuracy": 0.75, "validation_top_k": 1},
                        "algo-1")
    found = {}
    for definition in request["AlgorithmSpecification"]["MetricDefinitions"]:
        for line in lines:
            m = re.search(definition["Regex"], line)
            if m:
                found[definition["Name"]] = float(m.group(1))
    assert found == {"train:accuracy": 0.5, "validation:accuracy": 0.75, "train:loss": 1.2, "train:throughput": 10.0}


def test_wait_follows_the_log_and_jobs_lists_the_job(account):
    """moto says Completed at once and writes no log (REFERENCE §8): the test writes the job's log stream as
    SageMaker would, and the client must print it, the summary and the model artifact."""
    logs = _boto("logs")
    try:
        logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    stream = "deeplens-cards-wait-1/algo-1-1764700000"
    logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream)
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream, logEvents=[
        {"timestamp": now, "message": "Epoch[0] Train-accuracy=0.500000"},
        {"timestamp": now + 1, "message": "Epoch[0] Validation-accuracy=0.750000"}])
    done = run_cli("launch", "--data", account, "--role", ROLE, "--name", "deeplens-cards-wait-1", "--wait",
                   "--epochs", "1")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Epoch[0] Validation-accuracy=0.750000" in out
    assert "deeplens-cards-wait-1: Completed" in out and "model artifact: s3://" in out
    listed = run_cli("jobs")
    assert listed.returncode == 0 and "deeplens-cards-wait-1" in listed.stdout and "Completed" in listed.stdout
    log = run_cli("logs", "deeplens-cards-wait-1")
    assert log.returncode == 0 and log.stdout.splitlines() == ["Epoch[0] Train-accuracy=0.500000",
                                                              "Epoch[0] Validation-accuracy=0.750000"]
    unknown = run_cli("logs", "deeplens-no-such-job")
    assert unknown.returncode == 1 and "no training job named deeplens-no-such-job" in unknown.stderr
    duplicate = run_cli("launch", "--data", account, "--role", ROLE, "--name", "deeplens-cards-wait-1")
    assert duplicate.returncode == 1 and "exists already" in duplicate.stderr


def _sagemaker_in_progress():
    """SageMaker as it answers while a job runs (moto's jobs are Completed at once and it has no StopTrainingJob)."""
    job = {"TrainingJobName": "deeplens-cards-ctrl-c", "TrainingJobStatus": "InProgress", "SecondaryStatus": "Training",
           "SecondaryStatusTransitions": [{"Status": "Starting", "StartTime": 1764700000,
                                           "StatusMessage": "Launching requested ML instances"},
                                          {"Status": "Training", "StartTime": 1764700100,
                                           "StatusMessage": "Training image download completed"}],
           "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/deeplens-cards-ctrl-c",
           "AlgorithmSpecification": {"TrainingInputMode": "File"}, "ResourceConfig": {},
           "StoppingCondition": {}, "CreationTime": 1764700000, "ModelArtifacts": {}}
    missing = (400, {"__type": "ValidationException", "message": "Requested resource not found."})
    created = []

    def describe(body):  # before CreateTrainingJob the name is free; after it the job runs
        return job if created else missing

    stand_in = JsonServiceStandIn({
        "CreateTrainingJob": (200, lambda body: created.append(body) or {"TrainingJobArn": job["TrainingJobArn"]}),
        "DescribeTrainingJob": (200, describe), "StopTrainingJob": (200, {})})
    return stand_in, created


@pytest.mark.parametrize("answer", ["s", "d"])
def test_ctrl_c_while_waiting_asks_to_stop_or_detach(account, monkeypatch, answer):
    stand_in, created = _sagemaker_in_progress()
    try:
        env = dict(os.environ, AWS_ENDPOINT_URL_SAGEMAKER=stand_in.endpoint)
        process = subprocess.Popen([sys.executable, "-m", "magiccards.cli", "launch", "--data", account, "--role", ROLE,
                                    "--name", "deeplens-cards-ctrl-c", "--wait", "--poll", "0.2", "--epochs", "1"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(op == "DescribeTrainingJob" for op, _ in stand_in.calls) < 3:
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(f"{answer}\n", timeout=60)
        assert process.returncode == 0, err
        assert "Starting: Launching requested ML instances" in out and "Stop it (s) or detach" in out
        stops = [body for op, body in stand_in.calls if op == "StopTrainingJob"]
        if answer == "s":
            assert stops == [{"TrainingJobName": "deeplens-cards-ctrl-c"}] and "stopping deeplens-cards-ctrl-c" in out
        else:
            assert stops == [] and "detached" in out and "magiccards logs deeplens-cards-ctrl-c --follow" in out
        assert created[0]["TrainingJobName"] == "deeplens-cards-ctrl-c"
    finally:
        stand_in.close()


# ---------------------------------------------------------------------------------------------- errors
def _launch(account, *extra):
    return run_cli("launch", "--data", account, "--role", ROLE, *extra)


def test_each_mistake_is_one_line_before_any_money_is_spent(account, tmp_path):
    s3 = _boto("s3")
    cases = {
        "a missing role": (("--role", "NoSuchRole"), "IAM role 'NoSuchRole' does not exist"),
        "an instance type that does not exist": (("--instance-type", "ml.g4dn.xlarg"), "did you mean ml.g4dn.xlarge"),
        "a spot job without a checkpoint location": (("--spot",), "a spot job needs --checkpoint-s3"),
        "a misspelt hyperparameter": (("--epochz", "3"), "did you mean epochs"),
        "a misspelt option": (("--instance_type", "ml.m5.large"), "did you mean the option --instance-type"),
        "a bad hyperparameter value": (("--epochs", "many"), "hyperparameter epochs='many'"),
        "a missing output bucket": (("--output", "s3://no-such-output-bucket/x"), "no-such-output-bucket does not exist"),
        "too few objects to shard": (("--distribution", "ShardedByS3Key", "--instance-count", "2"),
                                     "ShardedByS3Key over 1 object(s) but the job has 2 instances"),
        "an image not in ECR": (("--image", "123456789012.dkr.ecr.us-east-1.amazonaws.com/magiccards:gpu"),
                                "is not in ECR: run `magiccards publish` first"),
    }
    for what, (extra, message) in cases.items():
        done = _launch(account, *extra) if extra[0] != "--role" else run_cli("launch", "--data", account, *extra)
        assert done.returncode == 1, what
        assert message in done.stderr, (what, done.stderr)
        assert "Traceback" not in done.stderr, what
    missing = run_cli("launch", "--data", "s3://no-such-data-bucket/cards", "--role", ROLE)
    assert missing.returncode == 1 and "no-such-data-bucket does not exist" in missing.stderr
    s3.create_bucket(Bucket="cards-eu-test", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket="cards-eu-test", Key="cards/train/train.rec", Body=b"x")
    elsewhere = run_cli("launch", "--data", "s3://cards-eu-test/cards", "--role", ROLE)
    assert elsewhere.returncode == 1 and "is in eu-west-1, the job runs in us-east-1" in elsewhere.stderr
    for name in ("a.jpg", "b.jpg"):
        s3.put_object(Bucket=BUCKET, Key=f"photos/{name}", Body=b"\xff\xd8")
    images = _launch(account, "--channel", f"train=s3://{BUCKET}/photos/,mode=Pipe")
    assert images.returncode == 1 and "Pipe mode but" in images.stderr and "holds images" in images.stderr
    empty = _launch(account, "--channel", f"train=s3://{BUCKET}/nothing-here/")
    assert empty.returncode == 1 and "nothing under" in empty.stderr


def test_missing_credentials_and_offline_checks(account, monkeypatch, tmp_path):
    without_credentials(monkeypatch, tmp_path)
    done = _launch(account, "--epochs", "2")
    assert done.returncode == 1 and "no AWS credentials" in done.stderr and "Traceback" not in done.stderr
    offline = _launch(account, "--epochz", "2")  # found before any AWS call: no credentials needed to find it
    assert offline.returncode == 1 and "did you mean epochs" in offline.stderr
    listed = run_cli("jobs")
    assert listed.returncode == 1 and "no AWS credentials" in listed.stderr


@pytest.mark.parametrize("code, message, expect", [
    ("ExpiredTokenException", "The security token included in the request is expired", "session token has expired"),
    ("AccessDeniedException", "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: "
                              "sagemaker:ListTrainingJobs", "access denied"),
])
def test_expired_token_and_access_denied_are_one_line(aws, monkeypatch, code, message, expect):
    """SageMaker answering as it does for an expired session token or a missing permission (moto accepts any
    credentials), reached through the per-service endpoint AWS_ENDPOINT_URL_SAGEMAKER."""
    stand_in = JsonServiceStandIn({"*": (400, {"__type": code, "message": message})})
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", stand_in.endpoint)
        for args in (("jobs",), ("stop", "deeplens-x"), ("logs", "deeplens-x")):
            done = run_cli(*args)
            assert done.returncode == 1 and expect in done.stderr and "Traceback" not in done.stderr, done.stderr
            assert len(done.stderr.strip().splitlines()) == 1
    finally:
        stand_in.close()


def test_stop_against_moto_says_the_endpoint_does_not_implement_it(account):
    """moto answers StopTrainingJob with HTTP 500 (not implemented, REFERENCE §8); the real request is checked in
    test_ctrl_c_while_waiting_asks_to_stop_or_detach."""
    assert _launch(account, "--name", "deeplens-cards-stop-1").returncode == 0
    done = run_cli("stop", "deeplens-cards-stop-1")
    assert done.returncode == 1 and "StopTrainingJob" in done.stderr and "Traceback" not in done.stderr


def test_request_validation_uses_botocore_model():
    from magiccards.aws import validate_request
    from magiccards.errors import UserError

    with pytest.raises(UserError) as info:
        validate_request("sagemaker", "CreateTrainingJob", {
            "TrainingJobName": "bad_name", "RoleArn": "arn:aws:iam::123456789012:role/x",
            "OutputDataConfig": {"S3OutputPath": "s3://b/o"}, "Unknown": 1,
            "AlgorithmSpecification": {"TrainingInputMode": "Stream", "TrainingImage": "x"},
            "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}})
    text = str(info.value)
    assert "Unknown parameter in input: \"Unknown\"" in text
    assert "TrainingJobName='bad_name' does not match" in text
    assert "TrainingInputMode='Stream' is not allowed" in text
