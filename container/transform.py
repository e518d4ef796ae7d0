"""`magiccards transform` and `transform-results`: a SageMaker batch transform job over a prefix of photos or
of RecordIO, and its answers drawn on the inputs.

    transform(TransformPlan(model=JOB | s3://... | MODEL_DIR, input=s3://in/, output=s3://out/, role=ROLE))
      1. the input prefix decides the request: only images → each object sent whole (SplitType None,
         `application/x-image`), only .rec → cut at record boundaries (SplitType RecordIO, several records
         a request, answers one per line); anything else under it, or nothing, is refused;
      2. a Model of the image (endpoints.model_request) and the CreateTransformJob request, both checked
         offline against botocore's model and then against the account; MaxConcurrentTransforms and
         MaxPayloadInMB are left to the container's own GET /execution-parameters answer (SageMaker asks it
         when the request does not set them) unless given;
      3. `--wait` follows the job to Completed (or its FailureReason).

The container is asked for the verbose JSON answer (`Accept: application/json; verbose=true`: class names
with every answer), which `transform-results` reads back beside each input.
"""
from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path, PurePosixPath

from magiccards.aws import S3Uri, bucket_region, calling, follow_status, region_of, validate_request
from magiccards.errors import DataError, UserError

from .endpoints import model_artifact, model_request
from .launch import check_image, role_arn
from .publish import ecr_image_uri

ACCEPT = "application/json; verbose=true"
TERMINAL = ("Completed", "Failed", "Stopped")
DRAWN_SUFFIXES = (".jpg", ".jpeg", ".png")  # what the server decodes (application/x-image)


@dataclasses.dataclass
class TransformPlan:
    model: str  # training job name, s3://.../model.tar.gz, or a local model directory
    input: str
    output: str
    role: str
    image: str | None = None
    name: str | None = None
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    upload_to: str | None = None
    max_concurrent: int | None = None
    max_payload_mb: int | None = None


def input_kind(keys: list[str], where: str) -> tuple[str, str]:
    """(SplitType, ContentType) for the objects under the input prefix; DataError for an empty or mixed one."""
    keys = [k for k in keys if not k.endswith("/")]
    if not keys:
        raise DataError(f"nothing under {where}: upload the photos (or .rec files) there first")
    records = [k for k in keys if k.endswith(".rec")]
    images = [k for k in keys if PurePosixPath(k).suffix.lower() in DRAWN_SUFFIXES]
    if records and len(records) == len(keys):
        return "RecordIO", "application/x-recordio"
    if images and len(images) == len(keys):
        return "None", "application/x-image"
    other = next(k for k in keys if k not in (records if len(records) >= len(images) else images))
    raise DataError(f"{where} holds {PurePosixPath(other).name} beside "
                    f"{'.rec files' if len(records) >= len(images) else 'photos'}: a transform's input prefix holds "
                    "only JPEG/PNG photos or only .rec files (every object under it is sent to the model)")


def _listed(s3, uri: S3Uri) -> list[str]:
    keys = []
    with calling(f"listing {uri}"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=uri.bucket, Prefix=uri.key):
            keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def request(plan: TransformPlan, name: str, split: str, content_type: str) -> dict:
    """The CreateTransformJob request (no AWS call)."""
    job = {
        "TransformJobName": name, "ModelName": name,
        "BatchStrategy": "MultiRecord" if split == "RecordIO" else "SingleRecord",
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": plan.input}},
                           "ContentType": content_type, "SplitType": split, "CompressionType": "None"},
        "TransformOutput": {"S3OutputPath": plan.output, "Accept": ACCEPT,
                            "AssembleWith": "Line" if split == "RecordIO" else "None"},
        "TransformResources": {"InstanceType": plan.instance_type, "InstanceCount": plan.instance_count},
        "Tags": [{"Key": "magiccards:transform", "Value": name}],
    }
    if plan.max_concurrent is not None:
        job["MaxConcurrentTransforms"] = plan.max_concurrent
    if plan.max_payload_mb is not None:
        job["MaxPayloadInMB"] = plan.max_payload_mb
    return job


def _environment(plan: TransformPlan) -> dict[str, str]:
    # the server refuses bodies over its own limit: a larger MaxPayloadInMB raises it to match
    return {"SAGEMAKER_MAX_PAYLOAD_IN_MB": str(plan.max_payload_mb)} if plan.max_payload_mb else {}


def check_offline(plan: TransformPlan) -> None:
    S3Uri.parse(plan.input, "input")
    S3Uri.parse(plan.output, "output")
    if plan.max_payload_mb is not None and not 1 <= plan.max_payload_mb <= 100:
        raise UserError(f"--max-payload-mb {plan.max_payload_mb}: from 1 to 100 (SageMaker's limit)")
    if plan.max_concurrent is not None and plan.max_concurrent < 1:
        raise UserError(f"--max-concurrent {plan.max_concurrent}: at least 1")
    if not 1 <= plan.instance_count <= 100:
        raise UserError(f"--instance-count {plan.instance_count}: from 1 to 100")
    import botocore.session

    shape = botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateTransformJob")
    types = shape.input_shape.members["TransformResources"].members["InstanceType"].enum
    if plan.instance_type not in types:
        raise UserError(f"instance type {plan.instance_type!r} does not run batch transform jobs: choose one such as "
                        "ml.m5.large, ml.c5.xlarge or ml.g4dn.xlarge")
    name = plan.name or "offline-check"
    validate_request("sagemaker", "CreateTransformJob", request(plan, name, "None", "application/x-image"))


def transform(plan: TransformPlan, session, wait: bool = False, poll: float = 30.0, log=print) -> dict:
    """Check and create the model and the transform job; returns {'name', 'status', ...}."""
    check_offline(plan)
    region = region_of(session)
    s3 = session.client("s3")
    source, target = S3Uri.parse(plan.input, "input"), S3Uri.parse(plan.output, "output")
    for uri in (source, target):
        where = bucket_region(s3, uri.bucket)
        if where != region:
            raise UserError(f"{uri} is in {where}, the job would run in {region}: batch transform reads and writes "
                            "its own region's buckets (pass --region " + where + ")")
    split, content_type = input_kind(_listed(s3, source), plan.input)
    name = plan.name or f"magiccards-transform-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    sagemaker = session.client("sagemaker")
    try:
        sagemaker.describe_transform_job(TransformJobName=name)
        raise UserError(f"a transform job named {name} exists already (pass another --name)")
    except sagemaker.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("ValidationException", "ResourceNotFound"):
            with calling("looking up the transform job name"):
                raise e
    model_data, job_image = model_artifact(plan.model, plan.upload_to, name, session, log)
    with calling("reading the account id (sts:GetCallerIdentity)"):
        account = session.client("sts").get_caller_identity()["Account"]
    image = plan.image or job_image or ecr_image_uri(account, region, "magiccards", "cpu")
    check_image(session, image, region)
    model = model_request(name, image, model_data, role_arn(session, plan.role), _environment(plan),
                          {"magiccards:transform": name})
    job = request(plan, name, split, content_type)
    validate_request("sagemaker", "CreateModel", model)
    validate_request("sagemaker", "CreateTransformJob", job)
    with calling(f"creating model {name}"):
        sagemaker.create_model(**model)
    try:
        with calling(f"creating transform job {name}"):
            sagemaker.create_transform_job(**job)
    except BaseException:
        try:
            sagemaker.delete_model(ModelName=name)
        except Exception:  # noqa: BLE001 - said below
            log(f"could not remove model {name}; delete it by hand")
        raise
    log(f"transform job {name}: {plan.input} ({'records' if split == 'RecordIO' else 'photos'}) -> {plan.output} on "
        f"{plan.instance_count} x {plan.instance_type}")
    status = wait_for(sagemaker, name, poll, log) if wait else None
    return {"name": name, "status": status, "model_data": model_data, "image": image, "split": split}


def wait_for(sagemaker, name: str, poll: float = 30.0, log=print) -> str:
    """Follow the job until it ends; a Failed job raises with its FailureReason."""
    return follow_status(lambda: sagemaker.describe_transform_job(TransformJobName=name), f"transform job {name}",
                         "TransformJobStatus", TERMINAL, poll, log)


def answers_of(body: bytes) -> list:
    """Every answer in a .out object: one JSON document, or several one after another (a line each with
    AssembleWith Line); a document that is a list (several records in one request) gives one per record."""
    text = body.decode("utf-8")
    decoder, index, found = json.JSONDecoder(), 0, []
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return found
        document, index = decoder.raw_decode(text, index)
        found += document if isinstance(document, list) and document and not isinstance(document[0], float) \
            else [document]


def job_writing_to(sagemaker, output: str) -> str:
    """The newest transform job whose answers go to `output` (s3://bucket/prefix/)."""
    wanted = str(S3Uri.parse(output, "output")).rstrip("/")
    with calling("listing transform jobs"):
        for page in sagemaker.get_paginator("list_transform_jobs").paginate(SortBy="CreationTime",
                                                                           SortOrder="Descending"):
            for summary in page.get("TransformJobSummaries", []):
                job = sagemaker.describe_transform_job(TransformJobName=summary["TransformJobName"])
                if job["TransformOutput"]["S3OutputPath"].rstrip("/") == wanted:
                    return job["TransformJobName"]
    raise UserError(f"no transform job writes to {output} (`magiccards transform` prints each job's name)")


def results(session, name: str, out: Path, progress: bool = True, log=print) -> int:
    """Download a finished transform job's answers (the job by name, or the newest writing to an s3:// output) and
    write `<input>.json` and `<input>.jpg` (drawn) per input photo or record; returns how many were written."""
    import numpy as np
    from tqdm import tqdm

    from magiccards.data.recordio_reader import read_stream, unpack_image_record
    from magiccards.files import atomic_path, write_text_atomic, writing
    from magiccards.serve.client import as_result
    from magiccards.serve.images import ImageError, decode_image
    from magiccards.serve.predict_files import annotate

    sagemaker, s3 = session.client("sagemaker"), session.client("s3")
    if name.startswith("s3://"):
        name = job_writing_to(sagemaker, name)
    with calling(f"describing transform job {name}"):
        job = sagemaker.describe_transform_job(TransformJobName=name)
    if job["TransformJobStatus"] != "Completed":
        raise UserError(f"transform job {name} is {job['TransformJobStatus']}: its answers are complete only once it "
                        "is Completed")
    source = S3Uri.parse(job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"])
    target = S3Uri.parse(job["TransformOutput"]["S3OutputPath"])
    keys = [k for k in _listed(s3, source) if not k.endswith("/")]
    if keys == [source.key]:  # the prefix named one object: answers sit beside its name
        base = source.key.rsplit("/", 1)[0] + "/" if "/" in source.key else ""
    else:
        base = source.key if not source.key or source.key.endswith("/") else source.key + "/"
    with writing(f"the output folder {out}"):
        out.mkdir(parents=True, exist_ok=True)
    written, missing = 0, []

    def write(stem: str, answer, pixels) -> None:
        result = as_result(answer)
        task = "detection" if isinstance(result, list) else "classification"
        with writing(f"the output folder {out}"):
            write_text_atomic(out / f"{stem}.json", json.dumps(answer, indent=1))
            with atomic_path(out / f"{stem}.jpg") as tmp:
                annotate(np.asarray(pixels), result, task).save(tmp, "JPEG", quality=90)

    for key in tqdm(keys, desc="answers", unit="input", disable=not progress):
        relative = key[len(base):] if key.startswith(base) else PurePosixPath(key).name
        stem = relative.replace("/", "__").rsplit(".", 1)[0]
        with calling(f"reading s3://{source.bucket}/{key}"):
            try:
                answer_body = s3.get_object(Bucket=target.bucket, Key=target.join(relative + ".out").key)["Body"].read()
            except s3.exceptions.NoSuchKey:
                missing.append(relative)
                continue
            data = s3.get_object(Bucket=source.bucket, Key=key)["Body"].read()
        try:
            answers = answers_of(answer_body)
        except (ValueError, UnicodeDecodeError):
            raise DataError(f"{relative}.out is not the JSON the model answers: {answer_body[:80]!r}") from None
        try:
            if key.endswith(".rec"):
                images = [unpack_image_record(r)[1] if r[:2] != b"\xff\xd8" else r
                          for r in read_stream(io.BytesIO(data), key)]
                if len(images) != len(answers):
                    raise DataError(f"{relative}.out holds {len(answers)} answers for {len(images)} records")
                for k, (image, answer) in enumerate(zip(images, answers)):
                    write(f"{stem}-{k:05d}", answer, decode_image(image))
                    written += 1
            else:
                write(stem, answers[0], decode_image(data))
                written += 1
        except ImageError as e:
            log(f"skipped {relative}: {e}")
    for relative in missing:
        log(f"no answer for {relative} (the job wrote no {relative}.out)")
    log(f"wrote {written} answer(s) with their drawings to {out}")
    return written
