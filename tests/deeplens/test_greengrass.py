"""`magiccards greengrass`: the component recipe, its artifact, the inference script on generated scenes, publishing."""
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import botocore.session
import numpy as np
import pytest
import yaml
from PIL import Image
from botocore.stub import Stubber
from botocore.validate import validate_parameters
from magiccards.deeplens.greengrass import GreengrassError, build, validate_recipe
from magiccards.deeplens.greengrass_publish import create_version, publish
from magiccards.serve.predictor import Predictor

from magiccards.errors import AwsConfigError

from ..helpers import CAPPED, run_cli, without_credentials

# A stand-in for awsiotsdk's GreengrassCoreIPCClientV2 (the nucleus is not here): it records what the
# script publishes, and which modules the script had loaded by then, into $IPC_RECORD.
STAND_IN = '''
import json, os, sys

class GreengrassCoreIPCClientV2:
    def __init__(self, client=None, executor=True):
        self.record = open(os.environ["IPC_RECORD"], "a")

    def publish_to_iot_core(self, *, topic_name=None, qos=None, payload=None, retain=None, user_properties=None,
                            message_expiry_interval_seconds=None, correlation_data=None, response_topic=None,
                            payload_format=None, content_type=None):
        modules = {n: getattr(m, "__file__", None) for n, m in sys.modules.items()}
        self.record.write(json.dumps({"topic": topic_name, "qos": qos, "payload": json.loads(payload),
                                      "modules": modules}) + "\\n")
        self.record.flush()
'''


def _copy(model: Path, tmp_path: Path) -> Path:
    job = tmp_path / "job"
    shutil.copytree(model.parent, job, ignore=shutil.ignore_patterns("checkpoints", "output", "exports"))
    return job / "model"


def _unpack(artifact: Path, where: Path) -> Path:
    """The artifact as Greengrass unpacks it: {artifacts:decompressedPath}/<zip name without .zip>/."""
    root = where / artifact.stem
    with zipfile.ZipFile(artifact) as archive:
        archive.extractall(root)
    return root


def _run_script(root: Path, stand_in: Path, record: Path, *args, ipc=True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=f"{stand_in}{os.pathsep}{root / 'lib'}", IPC_RECORD=str(record))
    if ipc:
        env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"] = str(root / "ipc.socket")
    else:
        env.pop("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", None)
    return subprocess.run([sys.executable, "-u", str(root / "infer.py"), "--model", str(root / "model"), *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=root, timeout=300)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ipc-stand-in")
    package = root / "awsiot" / "greengrasscoreipc"
    package.mkdir(parents=True)
    (root / "awsiot" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "clientv2.py").write_text(STAND_IN)
    return root


def test_the_stand_in_takes_the_arguments_of_the_real_ipc_client():
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    from awsiot.greengrasscoreipc.model import QOS

    real = inspect.signature(GreengrassCoreIPCClientV2.publish_to_iot_core).parameters
    assert {"topic_name", "qos", "payload"} <= set(real) and QOS.AT_LEAST_ONCE == "1"
    namespace = {}
    exec(STAND_IN, namespace)
    assert list(inspect.signature(namespace["GreengrassCoreIPCClientV2"].publish_to_iot_core).parameters) == list(real)


def test_detector_component_runs_on_generated_scenes_and_publishes_over_ipc(trained_detector, stand_in, tmp_path):
    """The component is built (ONNX FP32 exported and checked on the job's validation records first), its
    recipe is valid and says the same in JSON and YAML, and the unpacked artifact's script, run as the
    Run step runs it, publishes one message per scene with the detections of the MXNet model, loading
    only the artifact's own copy of serve/ (no MXNet, no training code)."""
    model = _copy(trained_detector, tmp_path)
    done = run_cli("greengrass", model, "--out", tmp_path / "component", "--bucket", "s3://my-components/gg",
                   "--version", "1.2.3", "--topic", "cards/found")
    assert done.returncode == 0, done.stderr
    assert "runs onnx fp32" in done.stdout and "greengrass-cli deployment create" in done.stdout
    name = "com.magiccards.job"
    recipe_json = tmp_path / "component" / "recipes" / f"{name}-1.2.3.json"
    recipe = json.loads(recipe_json.read_text())
    assert yaml.safe_load(recipe_json.with_suffix(".yaml").read_text()) == recipe
    validate_recipe(recipe)
    assert recipe["RecipeFormatVersion"] == "2020-01-25" and recipe["ComponentVersion"] == "1.2.3"
    manifest = recipe["Manifests"][0]
    assert manifest["Platform"]["os"] == "linux"
    assert manifest["Artifacts"][0]["URI"] == f"s3://my-components/gg/{name}/1.2.3/magiccards-edge.zip"
    assert "requirements.txt" in manifest["Lifecycle"]["Install"]["Script"]
    access = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]["aws.greengrass.ipc.mqttproxy"]
    assert list(access.values())[0]["resources"] == ["cards/found"]
    # the request CreateComponentVersion would send is valid for the service's own model
    op = botocore.session.get_session().get_service_model("greengrassv2").operation_model("CreateComponentVersion")
    validate_parameters({"inlineRecipe": recipe_json.read_bytes()}, op.input_shape)

    artifact = tmp_path / "component" / "artifacts" / name / "1.2.3" / "magiccards-edge.zip"
    root = _unpack(artifact, tmp_path / "device")
    assert {"infer.py", "requirements.txt"} <= {p.name for p in root.iterdir()}
    assert (root / "model" / "exports" / "onnx-fp32" / "model.onnx").is_file()
    assert not (root / "model" / "training-state.params").exists()
    requirements = (root / "requirements.txt").read_text().split()
    assert "onnxruntime==1.32.0" in requirements and any(r.startswith("awsiotsdk==") for r in requirements)

    from magiccards.deeplens.validation import read_samples
    from PIL import Image
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    samples = read_samples(trained_detector.parent.parent / "rec" / "validation.rec", "detection", 6)
    for i, sample in enumerate(samples):
        Image.fromarray(sample.image).save(scenes / f"scene-{i}.jpg", quality=95)
    record = tmp_path / "published.jsonl"
    done = _run_script(root, stand_in, record, "--source", scenes, "--topic", "cards/found", "--once",
                       "--score-threshold", "0.1", "--backend", "onnxruntime:fp32")
    assert done.returncode == 0, done.stderr
    assert "published 6 results" in done.stdout
    messages = [json.loads(line) for line in record.read_text().splitlines()]
    assert [m["topic"] for m in messages] == ["cards/found"] * 6 and {m["qos"] for m in messages} == {"1"}
    loaded = messages[0]["modules"]
    ours = {n: f for n, f in loaded.items() if n.split(".")[0] == "magiccards"}
    assert ours and all(f is None or f.startswith(str(root / "lib")) for f in ours.values())
    assert "mxnet" not in loaded and "gluoncv" not in loaded and "magiccards.train" not in loaded
    reference = Predictor(trained_detector, backend="mxnet")
    found = 0
    for i, m in enumerate(messages):
        payload = m["payload"]
        assert payload["source"] == f"scene-{i}.jpg" and payload["task"] == "detection"
        assert payload["backend"] == "onnxruntime fp32"
        image = np.asarray(Image.open(scenes / f"scene-{i}.jpg").convert("RGB"))
        want = reference.predict([image], score_threshold=0.1)[0]
        got = payload["prediction"]
        assert len(got) == len(want)
        for row, d in zip(got, want):
            assert row[0] == d.class_id and abs(row[1] - d.score) < 1e-3
            assert np.abs(np.array(row[2:]) - np.array(d.box)).max() < 0.01
        assert payload["names"] == [d.name for d in want]
        found += len(got)
    assert found > 0, "the detector found cards in the scenes"


def test_classifier_component_with_openvino_prints_results_off_the_device(trained_classifier, packed_cards,
                                                                         stand_in, tmp_path):
    model = _copy(trained_classifier, tmp_path)
    component = build(model, tmp_path / "component", export="openvino", log=lambda line: None)
    assert component.export == ("openvino", "fp32")
    assert "Backend" in component.recipe["ComponentConfiguration"]["DefaultConfiguration"]
    assert component.artifact_uri.startswith("s3://your-bucket/")  # no --bucket: a placeholder, said so
    root = _unpack(component.artifact, tmp_path / "device")
    assert sorted(p.name for p in (root / "model" / "exports").iterdir() if p.is_dir()) == ["openvino-fp32"]
    from magiccards.deeplens.validation import read_samples
    from PIL import Image
    folder = tmp_path / "cards"
    folder.mkdir()
    samples = read_samples(packed_cards / "validation.rec", "classification", 5)
    for i, sample in enumerate(samples):
        Image.fromarray(sample.image).save(folder / f"card-{i}.png")
    done = _run_script(root, stand_in, tmp_path / "unused.jsonl", "--source", folder, "--topic", "t", "--once",
                       "--publish", "stdout", ipc=False)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 5
    reference = Predictor(trained_classifier, backend="mxnet")
    for i, line in enumerate(lines):
        image = np.asarray(Image.open(folder / f"card-{i}.png").convert("RGB"))
        want = reference.predict([image])[0]
        assert line["predicted_label"] == want.classes[want.predicted_label]
        assert np.abs(np.array(line["prediction"]) - want.probabilities).max() < 1e-3
        assert line["backend"] == "openvino fp32"

    # off the device, the IPC publisher says what is wrong; a model that cannot load is published, not a crash loop
    done = _run_script(root, stand_in, tmp_path / "unused.jsonl", "--source", folder, "--topic", "t", ipc=False)
    assert done.returncode == 1 and "not running as a Greengrass component" in done.stderr
    assert "Traceback" not in done.stderr
    (root / "model" / "classes.txt").unlink()
    record = tmp_path / "errors.jsonl"
    done = _run_script(root, stand_in, record, "--source", folder, "--topic", "t", "--once")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    published = [json.loads(line)["payload"] for line in record.read_text().splitlines()]
    assert len(published) == 1 and "classes.txt" in published[0]["error"]


def test_recipe_schema_check_names_what_is_wrong(classifier, tmp_path):
    from magiccards.deeplens.greengrass import recipe

    from magiccards.model_dir import open_model_dir
    good = recipe("com.example.cards", "1.0.0", "s3://bucket-name/key.zip", open_model_dir(classifier),
                  "onnx", "fp32", "cards/found", "0")
    validate_recipe(good)
    cases = [
        (lambda r: r.pop("ComponentVersion"), "ComponentVersion is missing"),
        (lambda r: r.update(RecipeFormatVersion="2021-01-01"), "RecipeFormatVersion must be 2020-01-25"),
        (lambda r: r.update(ComponentVersion="1.0"), "not a semantic version"),
        (lambda r: r.update(ComponentName="aws.greengrass.Mine"), "not aws.*"),
        (lambda r: r.update(ComponentName="my component"), "ComponentName"),
        (lambda r: r["Manifests"][0]["Platform"].update(os="beos"), "Platform os 'beos'"),
        (lambda r: r["Manifests"][0]["Lifecycle"].update(Start="x"), "unknown lifecycle steps ['Start']"),
        (lambda r: r["ComponentConfiguration"]["DefaultConfiguration"].pop("Topic"), "{configuration:/Topic}"),
        (lambda r: r["Manifests"][0]["Artifacts"][0].update(URI="https://x/y.zip"), "not s3://BUCKET/KEY"),
        (lambda r: r["Manifests"][0]["Artifacts"][0].update(Unarchive="TAR"), "Unarchive 'TAR'"),
        (lambda r: r.update(Manifests=[]), "Manifests must be a non-empty list"),
    ]
    for change, message in cases:
        bad = json.loads(json.dumps(good))
        change(bad)
        with pytest.raises(GreengrassError) as info:
            validate_recipe(bad)
        assert message in str(info.value), (message, str(info.value))


@pytest.mark.parametrize("args, message", [
    (["--version", "1.0"], "not a semantic version"),
    (["--name", "my component"], "--name 'my component'"),
    (["--topic", "cards/#"], "no wildcards"),
    (["--bucket", "my-bucket"], "not an S3 URI"),
    (["--export", "tflite"], "tflite"),
    (["--publish"], "give --bucket s3://BUCKET/PREFIX"),
])
def test_bad_arguments_are_one_line(classifier, tmp_path, args, message):
    done = run_cli("greengrass", classifier, "--out", tmp_path / "c", *args)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "c").exists()


def test_a_model_without_validation_records_says_how_to_export(classifier, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(classifier, model, ignore=shutil.ignore_patterns("exports"))
    done = run_cli("greengrass", model, "--out", tmp_path / "c")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "--validation" in done.stderr


def test_publish_uploads_to_s3_and_creates_the_component_version(trained_classifier, aws, tmp_path, monkeypatch):
    """S3 is moto's (a real HTTP server); moto has no greengrassv2, so the create call is checked with
    botocore's Stubber (the request validated against the service model), and against moto's answer
    (HTTP 404) for the error the user sees."""
    import boto3
    session = boto3.session.Session()
    session.client("s3").create_bucket(Bucket="my-components")
    model = _copy(trained_classifier, tmp_path)
    component = build(model, tmp_path / "c", bucket="s3://my-components/gg", log=lambda line: None)
    greengrass = session.client("greengrassv2")
    arn = f"arn:aws:greengrass:us-east-1:123456789012:components:{component.name}:versions:1.0.0"
    with Stubber(greengrass) as stub:
        stub.add_response("create_component_version",
                          {"arn": arn, "componentName": component.name, "componentVersion": "1.0.0",
                           "creationTimestamp": 0, "status": {"componentState": "REQUESTED"}},
                          {"inlineRecipe": json.dumps(component.recipe).encode()})
        stub.add_response("describe_component", {"arn": arn, "status": {"componentState": "DEPLOYABLE"}}, {"arn": arn})
        from magiccards.deeplens.greengrass_publish import upload
        uri = upload(component, session.client("s3"), progress=False)
        result = create_version(component, greengrass, poll=0.01, log=lambda line: None)
        stub.assert_no_pending_responses()
    assert result == {"arn": arn, "state": "DEPLOYABLE", "errors": {}}
    stored = session.client("s3").head_object(Bucket="my-components", Key=uri.split("/", 3)[3])
    assert stored["ContentLength"] == component.artifact.stat().st_size

    with pytest.raises(AwsConfigError) as info:  # moto's answer to greengrassv2: not the service
        publish(component, session, progress=False, log=lambda line: None)
    assert "HTTP 404" in str(info.value) and "<html" not in str(info.value)

    with Stubber(greengrass) as stub:  # the service rejects the artifact (e.g. the device role cannot read it)
        stub.add_response("create_component_version", {"arn": arn, "componentName": component.name,
                          "componentVersion": "1.0.0", "creationTimestamp": 0,
                          "status": {"componentState": "FAILED", "errors": {"s3://my-components": "ACCESS_DENIED"}}})
        with pytest.raises(GreengrassError) as info:
            create_version(component, greengrass, poll=0.01, log=lambda line: None)
    assert "ACCESS_DENIED" in str(info.value)

    missing = build(model, tmp_path / "d", bucket="s3://no-such-bucket/gg", log=lambda line: None)
    with pytest.raises(AwsConfigError) as info:
        upload(missing, session.client("s3"), progress=False)
    assert "no-such-bucket" in str(info.value)
    without_credentials(monkeypatch, tmp_path)
    with pytest.raises(AwsConfigError) as info:
        publish(component, boto3.session.Session(), progress=False, log=lambda line: None)
    assert "no AWS credentials" in str(info.value)


def _as_greengrass_runs(recipe: dict, step: str, config: dict, decompressed: Path, work: Path) -> tuple[str, dict]:
    """A lifecycle step's script and environment as the nucleus makes them: recipe variables replaced by text
    ({configuration:/KEY} by the deployment's value), the manifest's and the step's Setenv in the environment."""
    def fill(text: str) -> str:
        text = text.replace("{artifacts:decompressedPath}", str(decompressed)).replace("{work:path}", str(work))
        return re.sub(r"\{configuration:/([^}]+)\}", lambda m: str(config[m.group(1)]), text)

    lifecycle = recipe["Manifests"][0]["Lifecycle"]
    env = {key: fill(value) for key, value in {**lifecycle.get("Setenv", {}), **lifecycle[step].get("Setenv", {})}.items()}
    return fill(lifecycle[step]["Script"]), env


def test_shell_metacharacters_in_the_configuration_stay_data(classifier, stand_in, tmp_path):
    """Hostile values never reach the device's shell as commands: given to `greengrass`, a topic outside AWS
    IoT's characters is refused; a source holding $(...) is accepted as a path and, like a deployment's merged
    configuration with quotes and semicolons, reaches infer.py as data through Setenv."""
    marker = tmp_path / "injected"
    for topic in (f'a";touch {marker};"b', "a/$(id)", "cards/\nfound", "x" * 300):
        done = run_cli("greengrass", classifier, "--out", tmp_path / "refused", "--topic", topic)
        assert done.returncode == 1 and "--topic" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "refused").exists()
    done = run_cli("greengrass", classifier, "--out", tmp_path / "c", "--source", "0\n; id")
    assert done.returncode == 1 and "--source" in done.stderr

    model = _copy(classifier, tmp_path)
    component = build(model, tmp_path / "c", source=f"$(touch {marker})", log=lambda line: None)
    recipe = component.recipe
    assert all("{configuration:" not in str(step.get("Script", "")) for step in
               recipe["Manifests"][0]["Lifecycle"].values() if isinstance(step, dict))
    device = tmp_path / "device"
    root = _unpack(component.artifact, device)
    work = tmp_path / "work"
    (work / "venv" / "bin").mkdir(parents=True)
    python = work / "venv" / "bin" / "python"  # the venv the Install step makes: this interpreter
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    record = tmp_path / "published.jsonl"
    config = dict(recipe["ComponentConfiguration"]["DefaultConfiguration"])
    config["Topic"] = f'cards"; touch {marker}; echo "'  # a deployment's configuration merge, unchecked by us
    for source in (config["Source"], f'"; touch {marker}; "'):
        script, env = _as_greengrass_runs(recipe, "Run", dict(config, Source=source), device, work)
        env = dict(os.environ, **env, IPC_RECORD=str(record),
                   AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT=str(root / "ipc.socket"))
        env["PYTHONPATH"] = f"{stand_in}{os.pathsep}{env['PYTHONPATH']}"
        done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 1 and "neither a camera index" in done.stderr, done.stderr
        assert source in done.stderr  # the literal text reached infer.py
    assert not marker.exists(), "a configuration value ran as a shell command"
    messages = [json.loads(line) for line in record.read_text().splitlines()]
    assert [m["topic"] for m in messages] == [config["Topic"]] * 2 and "neither" in messages[0]["payload"]["error"]

    recipe["Manifests"][0]["Lifecycle"]["Run"]["Script"] += " --topic {configuration:/Topic}"
    with pytest.raises(GreengrassError) as info:
        validate_recipe(recipe)
    assert "splices a configuration value into shell text" in str(info.value)


def test_a_component_written_on_a_full_disk_leaves_the_old_one_whole(trained_classifier, tmp_path):
    """The artifact and both recipes appear together: a rebuild that runs out of space (file sizes capped)
    leaves the previous component's three files as they were, and no temporary file."""
    model = _copy(trained_classifier, tmp_path)
    out = tmp_path / "component"
    component = build(model, out, log=lambda line: None)
    before = {p: p.read_bytes() for p in (component.artifact, component.recipe_json, component.recipe_yaml)}
    done = subprocess.run([sys.executable, "-c", CAPPED.format(200000), "greengrass", str(model), "--out", str(out),
                           "--topic", "cards/other"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "cannot write the component folder" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert {p: p.read_bytes() for p in before} == before
    assert [p for p in out.rglob("*") if p.name.endswith(".tmp")] == []


def test_two_stage_component_runs_both_stages_exports_on_the_device(two_stage, stand_in, tmp_path):
    """A two-stage model's component: both stages exported (ONNX FP32, each checked, and the whole), both in
    the artifact with only that export; its script publishes what the two-stage model answers on MXNet."""
    from magiccards.serve.loader import load

    model = tmp_path / "two-stage"
    shutil.copytree(two_stage, model)
    component = build(model, tmp_path / "component", log=lambda line: None)
    assert component.export == ("onnx", "fp32") and "two-stage" in component.recipe["ComponentDescription"]
    root = _unpack(component.artifact, tmp_path / "device")
    for stage in ("detector", "classifier"):
        assert (root / "model" / stage / "exports" / "onnx-fp32" / "model.onnx").is_file()
        assert not (root / "model" / stage / "training-state.params").exists()
    assert json.loads((root / "model" / "model-card.json").read_text())["task"] == "two-stage"
    from magiccards.data.synth import synth
    synth(tmp_path / "scenes", task="detection", count=3, classes=2, size=128, max_cards=2, seed=44, workers=1,
          progress=False)
    scenes = tmp_path / "scenes" / "images"
    record = tmp_path / "published.jsonl"
    done = _run_script(root, stand_in, record, "--source", scenes, "--topic", "cards/found", "--once",
                       "--score-threshold", "0.02", "--backend", "onnxruntime:fp32")
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(messages) == 3 and "mxnet" not in messages[0]["modules"]
    found = 0
    with load(two_stage, backend="mxnet") as reference:
        for m in messages:
            image = np.asarray(Image.open(scenes / m["payload"]["source"]).convert("RGB"))
            want = reference.predict([image], score_threshold=0.02)[0]
            got = m["payload"]["prediction"]
            assert len(got) == len(want) and m["payload"]["names"] == [d.name for d in want]
            for row, d in zip(got, want):
                assert row[0] == d.class_id and abs(row[1] - d.score) < 1e-3
            found += len(got)
    assert found > 0, "the two-stage model found cards in the scenes"
