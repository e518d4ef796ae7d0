"""`transform` and `transform-results` against moto_server, with a real container's answers.

moto stores the CreateTransformJob request and calls it Completed at once, writing nothing (REFERENCE §10). So
the test plays SageMaker's part after the request is checked: it sends each input to a real `magiccards serve`
of a trained detector exactly as the job asks (the job's ContentType and Accept; a .rec as one RecordIO
request) and stores each answer as SageMaker does (`<output>/<input>.out`); `transform-results` then reads them
back and draws them."""
from __future__ import annotations

import http.client
import io
import json

import mxnet as mx

from tests.helpers import read_all, run_cli
from tests.serve.test_server import Server

from .test_cloud import BUCKET, ROLE, _boto, account  # noqa: F401 - the account fixture


def _as_sagemaker_would(job: dict, server: Server) -> None:
    """Each object under the job's input prefix to the container, its answer to OUTPUT/<relative key>.out."""
    s3 = _boto("s3")
    source = job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"][len(f"s3://{BUCKET}/"):]
    target = job["TransformOutput"]["S3OutputPath"][len(f"s3://{BUCKET}/"):].rstrip("/")
    for entry in s3.list_objects_v2(Bucket=BUCKET, Prefix=source)["Contents"]:
        body = s3.get_object(Bucket=BUCKET, Key=entry["Key"])["Body"].read()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        conn.request("POST", "/invocations", body, {"Content-Type": job["TransformInput"]["ContentType"],
                                                    "Accept": job["TransformOutput"]["Accept"]})
        answer = conn.getresponse()
        assert answer.status == 200, answer.read()
        s3.put_object(Bucket=BUCKET, Key=f"{target}/{entry['Key'][len(source):]}.out", Body=answer.read() + b"\n")
        conn.close()


def _model_in_s3() -> str:
    _boto("s3").put_object(Bucket=BUCKET, Key="models/scenes/model.tar.gz", Body=b"a model.tar.gz")
    return f"s3://{BUCKET}/models/scenes/model.tar.gz"


def test_photos_and_records_are_transformed_and_their_answers_drawn(account, detector, packed_scenes,  # noqa: F811
                                                                     tmp_path):
    s3, sagemaker = _boto("s3"), _boto("sagemaker")
    scenes = read_all(packed_scenes / "validation.rec")[:5]
    for k, (_, jpeg) in enumerate(scenes[:3]):
        s3.put_object(Bucket=BUCKET, Key=f"photos-in/table/scene-{k}.jpg", Body=jpeg)
    records = io.BytesIO()  # five image records as im2rec packs them, in MXNet's RecordIO framing
    for header, jpeg in scenes:
        records.write(_framed(mx.recordio.pack(header, jpeg)))
    s3.put_object(Bucket=BUCKET, Key="recs-in/batch.rec", Body=records.getvalue())
    model = _model_in_s3()

    photos = run_cli("transform", model, f"s3://{BUCKET}/photos-in/", f"s3://{BUCKET}/photos-out/", "--role", ROLE,
                     "--name", "cards-photos-1", "--instance-type", "ml.c5.xlarge", "--wait", "--poll", "0.1")
    assert photos.returncode == 0, photos.stderr
    assert "cards-photos-1: Completed" in photos.stdout
    job = sagemaker.describe_transform_job(TransformJobName="cards-photos-1")
    assert job["TransformInput"]["ContentType"] == "application/x-image"
    assert job["TransformInput"]["SplitType"] == "None" and job["BatchStrategy"] == "SingleRecord"
    assert job["TransformOutput"]["Accept"] == "application/json; verbose=true"
    assert job["TransformResources"] == {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1}
    assert "MaxConcurrentTransforms" not in job and "MaxPayloadInMB" not in job  # the container's own answer
    served = sagemaker.describe_model(ModelName="cards-photos-1")["PrimaryContainer"]
    assert served["ModelDataUrl"] == model and served["Image"].endswith("/magiccards:cpu")

    records_job = run_cli("transform", model, f"s3://{BUCKET}/recs-in/", f"s3://{BUCKET}/recs-out/", "--role", ROLE,
                          "--name", "cards-recs-1", "--max-payload-mb", "20")
    assert records_job.returncode == 0, records_job.stderr
    job2 = sagemaker.describe_transform_job(TransformJobName="cards-recs-1")
    assert job2["TransformInput"]["SplitType"] == "RecordIO" and job2["BatchStrategy"] == "MultiRecord"
    assert job2["TransformInput"]["ContentType"] == "application/x-recordio" and job2["MaxPayloadInMB"] == 20
    assert job2["TransformOutput"]["AssembleWith"] == "Line"
    assert sagemaker.describe_model(ModelName="cards-recs-1")["PrimaryContainer"]["Environment"][
        "SAGEMAKER_MAX_PAYLOAD_IN_MB"] == "20"  # the server takes what the job sends

    server = Server(detector, workers=1)
    try:
        _as_sagemaker_would(job, server)
        _as_sagemaker_would(job2, server)
    finally:
        assert server.stop() == 0
    drawn = run_cli("transform-results", "cards-photos-1", "--out", tmp_path / "photos", "--no-progress")
    assert drawn.returncode == 0, drawn.stderr
    names = sorted(p.name for p in (tmp_path / "photos").iterdir())
    assert names == [f"table__scene-{k}.{s}" for k in range(3) for s in ("jpg", "json")], names
    answer = json.loads((tmp_path / "photos" / "table__scene-0.json").read_text())
    assert "prediction" in answer and len(answer["names"]) == len(answer["prediction"])  # named: verbose
    assert (tmp_path / "photos" / "table__scene-0.jpg").stat().st_size > 1000
    drawn = run_cli("transform-results", f"s3://{BUCKET}/recs-out/", "--out", tmp_path / "recs", "--no-progress")
    assert drawn.returncode == 0, drawn.stderr
    assert sorted(p.name for p in (tmp_path / "recs").glob("*.jpg")) == [f"batch-{k:05d}.jpg" for k in range(5)]
    assert "wrote 5 answer(s)" in drawn.stdout


def _framed(payload: bytes) -> bytes:
    """One RecordIO record (MXNet's framing: magic, length, payload padded to 4 bytes)."""
    import struct

    return struct.pack("<II", 0xced7230a, len(payload)) + payload + b"\0" * (-len(payload) % 4)


def test_each_transform_mistake_is_one_line_before_any_money_is_spent(account, tmp_path):  # noqa: F811
    s3 = _boto("s3")
    model = _model_in_s3()
    s3.put_object(Bucket=BUCKET, Key="photos-x/a.jpg", Body=b"\xff\xd8")
    s3.put_object(Bucket=BUCKET, Key="mixed-in/a.jpg", Body=b"\xff\xd8")
    s3.put_object(Bucket=BUCKET, Key="mixed-in/notes.txt", Body=b"notes")
    first = run_cli("transform", model, f"s3://{BUCKET}/photos-x/", f"s3://{BUCKET}/o/", "--role", ROLE,
                    "--name", "cards-taken-1")
    assert first.returncode == 0, first.stderr
    cases = {
        "an empty input prefix": ((f"s3://{BUCKET}/nothing-in/",), "nothing under"),
        "photos and other files": ((f"s3://{BUCKET}/mixed-in/",), "notes.txt beside photos"),
        "a training-only instance type": ((f"s3://{BUCKET}/photos-x/", "--instance-type", "ml.p4de.24xlarge"),
                                          "does not run batch transform jobs"),
        "a payload over SageMaker's limit": ((f"s3://{BUCKET}/photos-x/", "--max-payload-mb", "200"), "from 1 to 100"),
        "a job name taken": ((f"s3://{BUCKET}/photos-x/", "--name", "cards-taken-1"), "exists already"),
        "a missing role": ((f"s3://{BUCKET}/photos-x/", "--role", "NoSuchRole"), "IAM role 'NoSuchRole' does not exist"),
    }
    for what, (args, message) in cases.items():
        role = [] if "--role" in args else ["--role", ROLE]
        done = run_cli("transform", model, args[0], f"s3://{BUCKET}/o/", *role, *args[1:])
        assert done.returncode == 1 and message in done.stderr, (what, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, (what, done.stderr)
    nowhere = run_cli("transform", model, f"s3://{BUCKET}/photos-x/", "s3://no-such-output-bucket/o/", "--role", ROLE)
    assert nowhere.returncode == 1 and "no-such-output-bucket does not exist" in nowhere.stderr
    none = run_cli("transform-results", "cards-none-1", "--out", tmp_path / "none")
    assert none.returncode == 1 and "cards-none-1" in none.stderr and "Traceback" not in none.stderr
    nobody = run_cli("transform-results", f"s3://{BUCKET}/nobody-writes-here/", "--out", tmp_path / "none")
    assert nobody.returncode == 1 and "no transform job writes to" in nobody.stderr
