"""`magiccards deeplens`: the DeepLens graph and package, the real Model Optimizer, the Lambda, the deployment."""
import ast
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from magiccards.deeplens import device_parity
from magiccards.deeplens.deploy import deploy
from magiccards.deeplens.device_graph import SUPPORTED_OPS, build, run_device, unsupported_ops
from magiccards.deeplens.graph import ExportError
from magiccards.deeplens.lambda_package import write_lambda
from magiccards.deeplens.model_optimizer import check, find_mo
from magiccards.deeplens.package import load_package_graph, package, read_package
from magiccards.deeplens.simulate import simulate
from magiccards.deeplens.validation import read_samples

from magiccards.errors import AwsConfigError
from magiccards.model_dir import open_model_dir

from ..helpers import run_cli, without_credentials


@pytest.fixture(scope="module")
def mo():
    """The Model Optimizer's venv (`make test` makes it; CI must have it)."""
    found = find_mo()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs the Model Optimizer venv (.venv-mo): make .venv-mo/.installed")
        pytest.skip("no .venv-mo: make .venv-mo/.installed")
    return found


def _copy(model: Path, tmp_path: Path) -> Path:
    job = tmp_path / "job"
    shutil.copytree(model.parent, job, ignore=shutil.ignore_patterns("checkpoints", "output", "exports"))
    return job / "model"


def _rec(model: Path) -> Path:
    return next((model.parent / "input" / "data" / "validation").glob("*.rec"))


def test_classifier_package_converts_with_the_model_optimizer(trained_classifier, mo, tmp_path):
    """The archive holds the symbol, the params and deeplens.json at its root; the graph has only DeepLens
    layers, ends in a softmax and takes BGR 0..255 frames; it answers as the trained model does; the real
    Model Optimizer converts it (FP32 and FP16) and the IR answers as MXNet does."""
    model = _copy(trained_classifier, tmp_path)
    out = tmp_path / "cards.tar.gz"
    done = run_cli("deeplens", "package", model, "--out", out, "--images", "40")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "DeepLens graph vs the trained model, 40 images): top-1 agreement 100.0 %" in done.stdout
    assert "Model Optimizer FP32 IR" in done.stdout and "Model Optimizer FP16 IR" in done.stdout
    assert "FAILED" not in done.stdout
    with tarfile.open(out) as tar:
        names = sorted(tar.getnames())
    assert names == ["deeplens.json", "image-classification-0000.params", "image-classification-symbol.json"]
    folder, value = read_package(out, tmp_path / "unpacked")
    assert value["mo_optimize"] == {"model_name": "image-classification", "input_width": 64, "input_height": 64,
                                    "platform": "MXNet", "aux_inputs": {"--epoch": 0, "--precision": "FP16"}}
    assert value["classes"] == list(open_model_dir(model).classes) and value["input"]["channels"] == "BGR"
    device = load_package_graph(folder, value)
    assert not unsupported_ops(device.symbol)
    ops = {n["op"] for n in json.loads(device.symbol.tojson())["nodes"]} - {"null"}
    assert ops <= SUPPORTED_OPS and "SoftmaxActivation" in ops
    probabilities = run_device(device, np.full((1, 3, 64, 64), 128, np.float32))
    assert probabilities.shape == (1, 4) and abs(probabilities.sum() - 1) < 1e-5


def _decided(model: Path) -> Path:
    """The detector with its background logits lowered by 2: the same graph, with confident answers (the
    small test detector scores ~0.2 everywhere, where GluonCV's per-class decoding and MultiBoxDetection's
    best class per anchor differ by design; from a score of 0.5 on they must agree exactly)."""
    import mxnet as mx
    m = open_model_dir(model)
    nodes = json.loads(Path(m.symbol_file).read_text())["nodes"]
    by_name = {n["name"]: n for n in nodes}
    softmax = next(n for n in nodes if n["op"] == "softmax")
    node, convs = nodes[softmax["inputs"][0][0]], []
    while node["op"] != "Concat":  # reshape -> concat of flatten(transpose(conv)) per feature map
        node = nodes[node["inputs"][0][0]]
    for i in node["inputs"]:
        n = nodes[i[0]]
        while n["op"] != "Convolution":
            n = nodes[n["inputs"][0][0]]
        convs += [nodes[j[0]]["name"] for j in n["inputs"][1:]]
    params = mx.nd.load(str(m.params_file))
    classes = len(m.classes) + 1  # channels: anchor-major, background first
    for key in params:
        if key.split(":", 1)[-1] in convs and key.endswith("_bias"):
            bias = params[key].asnumpy()
            bias[0::classes] -= 2.0  # the background less likely: the foreground scores rise, their order stays
            params[key] = mx.nd.array(bias)
    assert sum(k.split(":", 1)[-1] in convs for k in params) == len(convs) == 12 and by_name
    mx.nd.save(str(m.params_file), params)
    return model


def test_detector_graph_matches_gluoncv_and_its_ir(trained_detector, mo, tmp_path):
    """SoftmaxActivation + MultiBoxPrior anchors + MultiBoxDetection in place of box_decode/box_nms: the
    anchors equal the trained SSD's, the detections match GluonCV's (mAP within 1 point, every confident
    detection found within 1 % of the image), and the Model Optimizer's IR matches the graph."""
    model = _decided(_copy(trained_detector, tmp_path))
    out = tmp_path / "scenes.tar.gz"
    value = package(model, out, images=64, log=lambda line: None)
    parity = value["parity"]
    assert parity["passed"] and parity["map_points_lost"] <= 1.0 and parity["max_box_difference"] <= 0.01, parity
    assert parity["matched_detections"] >= 20, parity
    # held to the trained network decoded by MultiBoxDetection's own rule; that rule's cost is reported apart
    assert 0 < parity["map_served"] <= 1 and abs(
        parity["map_points_by_rule"] - 100 * (parity["map_served"] - parity["map_reference"])) < 1e-2, parity
    assert list(value["detection"]["variances"]) == [0.1, 0.1, 0.2, 0.2] and value["detection"]["nms_threshold"] == 0.45
    assert len(value["detection"]["anchor_layers"]) == 6
    lines = []
    records = check(out, _rec(model), images=64, log=lines.append)
    assert [r["precision"] for r in records] == ["FP32", "FP16"] and all(r["passed"] for r in records), lines
    assert records[0]["max_box_difference"] <= 1e-3 and abs(records[0]["map_points_lost"]) <= 0.1


def _frames(model: Path, folder: Path, n: int, rec: Path | None = None) -> list[np.ndarray]:
    """Validation images of the model's job (or of `rec`), as JPEG frames (BGR on disk, as the camera gives them)."""
    folder.mkdir()
    images = [s.image for s in read_samples(rec or _rec(model), open_model_dir(model).task, n)]
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"frame-{i:03d}.jpg"), cv2.resize(image, (320, 240))[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 97])
    return [cv2.imread(str(p)) for p in sorted(folder.iterdir())]


def test_lambda_runs_the_detector_end_to_end_against_device_stand_ins(trained_detector, mo, tmp_path):
    """The generated Lambda (Python 3.7 syntax), run by `deeplens simulate` with stand-ins of awscam, mo and
    greengrasssdk that do the real work (the real Model Optimizer, the IR on OpenVINO, parseResult as
    documented): one message per frame on $aws/things/<thing>/infer with the classes and boxes (frame
    pixels) of the DeepLens graph, and the annotated frame from the project stream's FIFO."""
    model = _copy(trained_detector, tmp_path)
    package(model, tmp_path / "pkg.tar.gz", images=16, log=lambda line: None)
    artifacts, value = read_package(tmp_path / "pkg.tar.gz", tmp_path / "artifacts")
    function = write_lambda(model, tmp_path / "function", score_threshold=0.05)
    ast.parse((function / "lambda_function.py").read_text(), feature_version=(3, 7))
    frames = _frames(model, tmp_path / "frames", 4)
    done = run_cli("deeplens", "simulate", function, "--package", tmp_path / "pkg.tar.gz", "--frames",
                   tmp_path / "frames", "--out", tmp_path / "sim")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (tmp_path / "sim" / "published.jsonl").read_text().splitlines()]
    assert len(records) == 4 and {r["topic"] for r in records} == {"$aws/things/deeplens_simulated/infer"}
    messages = [r["payload"] for r in records]
    annotated = cv2.imread(str(tmp_path / "sim" / "annotated.jpg"))
    assert annotated is not None and annotated.shape == (480, 858, 3)  # the stream's resolution
    device = load_package_graph(artifacts, value)
    classes = value["classes"]
    checked = 0
    for i, (frame, message) in enumerate(zip(frames, messages)):
        assert message["frame"] == i and "error" not in message
        want = device_parity.detections(run_device(device, device_parity.device_input(
            frame[:, :, ::-1], "detection", (3, 128, 128)))[0], classes)
        got = message["ssd"]
        assert all(o["label"] in classes and o["prob"] >= 0.05 for o in got)
        # a small detector's scores are low: its three best boxes clear of the threshold (deeper down the list the
        # IR's and MXNet's NMS may keep different low-score boxes)
        for d in sorted([d for d in want if d.score >= 0.06], key=lambda d: -d.score)[:3]:
            box = np.array(d.box) * [320, 240, 320, 240]
            near = [o for o in got if o["label"] == d.name and abs(o["prob"] - d.score) < 0.01
                    and np.abs(np.array([o["xmin"], o["ymin"], o["xmax"], o["ymax"]]) - box).max() <= 0.02 * 320]
            assert near, (d, got)
            checked += 1
    assert checked > 0, "the detector found cards with a score of 0.06 or more"


def test_lambda_classifies_and_publishes_a_model_that_cannot_load(trained_classifier, mo, tmp_path):
    model = _copy(trained_classifier, tmp_path)
    package(model, tmp_path / "pkg.tar.gz", images=16, log=lambda line: None)
    artifacts, value = read_package(tmp_path / "pkg.tar.gz", tmp_path / "artifacts")
    function = write_lambda(model, tmp_path / "function")
    frames = _frames(model, tmp_path / "frames", 3)
    messages = simulate(function, tmp_path / "pkg.tar.gz", tmp_path / "frames", tmp_path / "sim",
                        log=lambda line: None)
    device = load_package_graph(artifacts, value)
    for frame, message in zip(frames, messages):
        want = run_device(device, device_parity.device_input(frame[:, :, ::-1], "classification", (3, 64, 64)))[0]
        top = message["classification"]
        assert len(top) == 3 and top[0]["label"] == value["classes"][int(want.argmax())]
        assert abs(top[0]["prob"] - float(want.max())) < 0.01

    # a package whose model the Model Optimizer cannot read: the error is published, the function stays up
    broken = tmp_path / "broken"
    folder, _ = read_package(tmp_path / "pkg.tar.gz", broken)
    (folder / "image-classification-0000.params").write_bytes(b"not params")
    with tarfile.open(tmp_path / "broken.tar.gz", "w:gz") as tar:
        for path in folder.iterdir():
            tar.add(path, arcname=path.name)
    errors = simulate(function, tmp_path / "broken.tar.gz", tmp_path / "frames", tmp_path / "sim-broken",
                      log=lambda line: None)
    assert len(errors) == 1 and "the model cannot be loaded" in errors[0]["error"]


def test_a_two_stage_model_goes_to_deeplens_with_both_graphs(two_stage, mo, tmp_path):
    """A two-stage model's package holds both graphs, each checked against its trained network and through the
    Model Optimizer on its own job's validation images; its Lambda loads both and, run by `deeplens simulate`,
    publishes what the two-stage predictor answers (the same boxes, classes and scores)."""
    from magiccards.model_dir import open_model
    from magiccards.serve.loader import load

    model = tmp_path / "model"
    shutil.copytree(two_stage, model)
    _decided(model / "detector")  # confident boxes, where the device's decoding rule and GluonCV's agree
    out = tmp_path / "two-stage.tar.gz"
    done = run_cli("deeplens", "package", model, "--out", out, "--images", "24")
    assert done.returncode == 0, done.stderr + done.stdout
    for stage in ("detector", "classifier"):
        for precision in ("FP32", "FP16"):
            assert f"{stage}: parity (Model Optimizer {precision} IR on OpenVINO" in done.stdout, done.stdout
    assert "FAILED" not in done.stdout
    with tarfile.open(out) as tar:
        names = sorted(tar.getnames())
    classifier = open_model_dir(model / "classifier")
    assert names == ["deeplens.json", f"image-classification-{classifier.epoch:04d}.params",
                     "image-classification-symbol.json", "model_algo_1-0000.params", "model_algo_1-symbol.json"]
    _, value = read_package(out, tmp_path / "unpacked")
    assert value["task"] == "two-stage" and value["classes"] == list(classifier.classes)
    assert value["parity"]["passed"] and set(value["stages"]) == {"detector", "classifier"}
    assert value["two_stage"]["classes_per_box"] == 2 and value["two_stage"]["box_threshold"] == 0.01

    function = tmp_path / "function"
    done = run_cli("deeplens", "lambda", model, "--out", function, "--score-threshold", "0.05")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in function.iterdir()) == ["config.json", "crops.py", "detection_decode.py",
                                                          "labels.txt", "lambda_function.py"]
    for source in function.glob("*.py"):
        ast.parse(source.read_text(), feature_version=(3, 7))
    rec = open_model(model).validation_records("detector")
    frames = _frames(model / "detector", tmp_path / "frames", 4, rec)
    messages = simulate(function, out, tmp_path / "frames", tmp_path / "sim", log=lambda line: None)
    assert len(messages) == 4
    checked = 0
    with load(model, backend="mxnet") as predictor:
        for frame, message in zip(frames, messages):
            got = message["ssd"]
            assert "error" not in message and all(o["label"] in classifier.classes and o["prob"] >= 0.05 for o in got)
            want = predictor.predict([frame[:, :, ::-1]], score_threshold=0.05)[0]
            for d in [d for d in want if d.score >= 0.1][:4]:
                box = np.array(d.box) * [320, 240, 320, 240]
                near = [o for o in got if o["label"] == d.name and abs(o["prob"] - d.score) < 0.02
                        and np.abs(np.array([o["xmin"], o["ymin"], o["xmax"], o["ymax"]]) - box).max() <= 0.02 * 320]
                assert near, (d, got)
                checked += 1
    assert checked >= 4, "the detector found cards with a score of 0.1 or more"


def test_unsupported_layers_are_named_with_a_network_that_works(tmp_path):
    import mxnet as mx

    from magiccards.model_dir import write_metadata
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Conv2D(4, 3), mx.gluon.nn.LeakyReLU(0.1), mx.gluon.nn.GlobalAvgPool2D(),
            mx.gluon.nn.Dense(2))
    net.initialize()
    net.hybridize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    folder = tmp_path / "model"
    folder.mkdir()
    net.export(str(folder / "image-classification"))
    write_metadata(folder, task="classification", network="my_leaky_net", classes=["a", "b"],
                   input_shape=(3, 32, 32), hyperparameters={}, metrics={}, dataset_sizes={}, framework={})
    with pytest.raises(ExportError) as info:
        build(open_model_dir(folder))
    assert "LeakyReLU" in str(info.value) and "resnet18_v1" in str(info.value)
    card = json.loads((folder / "model-card.json").read_text())
    card["input"]["shape"] = [1, 3, 1100, 1100]
    (folder / "model-card.json").write_text(json.dumps(card))
    with pytest.raises(ExportError) as info:
        build(open_model_dir(folder))
    assert "1024" in str(info.value)


def test_a_package_with_paths_outside_its_root_is_refused(tmp_path, mo):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        data = b"{}"
        member = tarfile.TarInfo("../outside.json")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    done = run_cli("deeplens", "check", evil, "--validation", evil)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "evil.tar.gz" in done.stderr
    assert not (tmp_path.parent / "outside.json").exists()
    # a manifest whose graph names are paths, or that is not what it says
    for manifest, message in ((b'{"task": "two-stage", "stages": {"detector": {"name": "../../x", "epoch": 0}, '
                               b'"classifier": {"name": "c", "epoch": 0}}}', "lacks ../../x-symbol.json"),
                              (b'{"task": "two-stage", "stages": []}', "deeplens.json is damaged"),
                              (b'[1, 2]', "deeplens.json is damaged")):
        with tarfile.open(evil, "w:gz") as tar:
            member = tarfile.TarInfo("deeplens.json")
            member.size = len(manifest)
            tar.addfile(member, io.BytesIO(manifest))
        done = run_cli("deeplens", "check", evil, "--validation", evil)
        assert done.returncode == 1 and "Traceback" not in done.stderr and message in done.stderr, done.stderr


def test_bad_names_fail_before_any_aws_call(classifier, tmp_path):
    done = run_cli("deeplens", "deploy", classifier, "--bucket", "my-models")
    assert done.returncode == 1 and "start with 'deeplens-'" in done.stderr
    done = run_cli("deeplens", "package", classifier, "--out", tmp_path / "model.zip")
    assert done.returncode == 1 and ".tar.gz" in done.stderr


def test_deploy_uploads_and_creates_and_updates_the_function(trained_classifier, aws, tmp_path, monkeypatch):
    """Against moto_server: the package in a deeplens- bucket (created), the Lambda with the role looked up by
    name, a published version; deploying again updates it (version 2); a SageMaker job name stands in for
    the model directory; a missing role and missing credentials are one line each."""
    import boto3
    session = boto3.session.Session()
    iam = session.client("iam")
    role = iam.create_role(RoleName="AWSDeepLensLambdaRole", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    model = _copy(trained_classifier, tmp_path)
    first = deploy(str(model), bucket="deeplens-cards-test", session=session, log=lambda line: None)
    assert first.version == "1" and first.model_uri == "s3://deeplens-cards-test/models/image-classification/" \
                                                       "image-classification.tar.gz"
    s3 = session.client("s3")
    body = s3.get_object(Bucket="deeplens-cards-test", Key=first.model_uri.split("/", 3)[3])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert "deeplens.json" in tar.getnames()
    function = session.client("lambda").get_function(FunctionName="deeplens-image-classification")["Configuration"]
    assert function["Runtime"] == "python3.7" and function["Role"] == role
    assert function["Handler"] == "lambda_function.function_handler"
    second = deploy(str(model), bucket="deeplens-cards-test", session=session, log=lambda line: None)
    assert second.version == "2"

    # a SageMaker job's model.tar.gz, by job name
    sagemaker = session.client("sagemaker")
    sagemaker.create_training_job(
        TrainingJobName="deeplens-cards-1", AlgorithmSpecification={"TrainingImage": "magiccards:cpu",
                                                                    "TrainingInputMode": "File"},
        RoleArn=role, OutputDataConfig={"S3OutputPath": "s3://deeplens-cards-test/jobs"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 3600})
    archive = tmp_path / "model.tar.gz"  # what SageMaker uploads: the model/ folder's files at the root
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(trained_classifier.iterdir()):
            if path.is_file():
                tar.add(path, arcname=path.name)
    s3.upload_file(str(archive), "deeplens-cards-test", "jobs/deeplens-cards-1/output/model.tar.gz")
    lines = []
    by_job = deploy("deeplens-cards-1", bucket="deeplens-cards-test", validation=_rec(model), session=session,
                    log=lines.append)
    assert by_job.model_uri.endswith("models/deeplens-cards-1/deeplens-cards-1.tar.gz") and by_job.version == "1"
    assert any("Import model" in line and by_job.model_uri in line for line in lines)

    s3.delete_object(Bucket="deeplens-cards-test", Key=first.model_uri.split("/", 3)[3])
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="deeplens-cards-test")["Contents"]}
    with pytest.raises(ExportError) as info:
        deploy(str(model), bucket="deeplens-cards-test", role="NoSuchRole", session=session, log=lambda line: None)
    assert "NoSuchRole does not exist" in str(info.value)
    # the role is checked before anything is packaged or uploaded: no new object
    assert {o["Key"] for o in s3.list_objects_v2(Bucket="deeplens-cards-test")["Contents"]} == keys
    without_credentials(monkeypatch, tmp_path)
    with pytest.raises(AwsConfigError) as info:
        deploy(str(model), bucket="deeplens-cards-test", session=boto3.session.Session(), log=lambda line: None)
    assert "no AWS credentials" in str(info.value)


def test_access_denied_is_one_line(trained_classifier, aws, tmp_path, monkeypatch):
    """IAM answering AccessDenied (a local HTTP server answering as IAM does, reached through the per-service
    endpoint variable AWS_ENDPOINT_URL_IAM; S3, STS and Lambda stay on moto_server)."""
    import http.server

    import boto3

    class Denied(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = (b"<ErrorResponse xmlns='https://iam.amazonaws.com/doc/2010-05-08/'><Error><Type>Sender</Type>"
                    b"<Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/ci is not authorized "
                    b"to perform: iam:GetRole</Message></Error><RequestId>1</RequestId></ErrorResponse>")
            self.send_response(403)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Denied)
    import threading
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", f"http://127.0.0.1:{server.server_port}")
        model = _copy(trained_classifier, tmp_path)
        with pytest.raises(AwsConfigError) as info:
            deploy(str(model), bucket="deeplens-denied", session=boto3.session.Session(), log=lambda line: None)
        assert "AccessDenied" in str(info.value) and "iam:GetRole" in str(info.value)
    finally:
        server.shutdown()
    done = run_cli("deeplens", "package", tmp_path / "nowhere", "--out", tmp_path / "x.tar.gz")
    assert done.returncode == 1 and "does not exist" in done.stderr and "Traceback" not in done.stderr
