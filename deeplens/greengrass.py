"""`magiccards greengrass MODEL_DIR --out DIR`: an AWS IoT Greengrass v2 component that runs the model.

DIR gets the layout the Greengrass CLI deploys from (`greengrass-cli deployment create --recipeDir
DIR/recipes --artifactDir DIR/artifacts`) and the cloud publishes from:

    recipes/<name>-<version>.json, .yaml     RecipeFormatVersion 2020-01-25, one Linux manifest
    artifacts/<name>/<version>/magiccards-edge.zip
        infer.py          the inference loop (deeplens/greengrass_infer.py)
        model/            the model directory with the one export it runs (and its parity record)
        lib/magiccards/   serve/'s predictor and what it imports, nothing of training
        requirements.txt  the runtime's pins, as verified here

The Install step makes a venv in the component's work folder and installs requirements.txt; Run starts
infer.py on the configured source (camera index, video or folder) and publishes each result to the
configured IoT Core topic over Greengrass IPC (the recipe grants exactly that topic).

No configuration value is ever spliced into shell text: the Run step's `Setenv` hands them to infer.py as
environment variables (MAGICCARDS_SOURCE, ...), so a topic or source holding `"`, `;` or `$(...)`, given
here or in a deployment's configuration merge, is data and never a command. The values given here are
checked against what AWS IoT allows before anything is written.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from magiccards.aws import S3Uri
from magiccards.errors import UserError
from magiccards.files import atomic_paths, write_text_atomic, writing
from magiccards.model_dir import (CLASSIFIER_DIR, DETECTOR_DIR, EXPORT_FILES, EXPORT_FORMATS, PARITY, TRAINING_STATE,
                                  ModelDir, TwoStageDir, open_model)

RECIPE_FORMAT = "2020-01-25"
ARTIFACT = "magiccards-edge"
PLACEHOLDER_BUCKET = "your-bucket"  # without --bucket: a local deployment needs no S3; publishing refuses it
AWSIOTSDK = "1.31.0"  # the IPC client the inference script uses (GreengrassCoreIPCClientV2)
# a topic to publish to: AWS IoT's topic characters (no wildcards, no reserved $ topics but a thing's own),
# at most 256 bytes and 7 slashes (AWS IoT Core quotas)
TOPIC_LEVEL = r"[A-Za-z0-9_.:@=-]+"
TOPIC_PATTERN = re.compile(rf"^(\$aws/things/)?{TOPIC_LEVEL}(/{TOPIC_LEVEL})*$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# the configuration a deployment may change, and the variable infer.py reads each from
SETTINGS = {"Source": "MAGICCARDS_SOURCE", "Topic": "MAGICCARDS_TOPIC", "Backend": "MAGICCARDS_EDGE_BACKEND",
            "IntervalSeconds": "MAGICCARDS_INTERVAL", "ScoreThreshold": "MAGICCARDS_SCORE_THRESHOLD"}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
LIFECYCLE_STEPS = {"Setenv", "Install", "Run", "Startup", "Shutdown", "Recover", "Bootstrap"}
PLATFORM_OS = {"linux", "windows", "darwin", "*"}
RUNTIME_PACKAGES = ("numpy", "pillow", "opencv-python-headless", "tqdm")


class GreengrassError(UserError):
    """The component cannot be built or published as asked."""


@dataclasses.dataclass(frozen=True)
class Component:
    """A written component: its recipe and where its files are."""

    name: str
    version: str
    recipe: dict
    recipe_json: Path
    recipe_yaml: Path
    artifact: Path
    export: tuple[str, str]

    @property
    def artifact_uri(self) -> str:
        return self.recipe["Manifests"][0]["Artifacts"][0]["URI"]


def default_name(model: ModelDir | TwoStageDir) -> str:
    """com.magiccards.<job folder name>, cleaned to the characters a component name may hold."""
    job = model.path.parent.name if model.path.name == "model" else model.path.name
    return "com.magiccards." + (re.sub(r"[^A-Za-z0-9._-]+", "-", job).strip("-.") or "model")


def _wanted_export(wanted: str) -> tuple[str, str]:
    """(format, precision) of an --export value: `onnx`, `openvino:int8`, `onnxruntime:fp16`..."""
    from magiccards.serve.backends import parse

    fmt, precision = (wanted.split(":", 1) + ["fp32"])[:2]
    if fmt not in EXPORT_FORMATS:
        runtime, precision = parse(wanted)  # onnxruntime:fp16 names the runtime; it says what is valid
        fmt = next((f for f, (r, _) in EXPORT_FORMATS.items() if r == runtime), None)
        if fmt is None:
            raise GreengrassError(f"--export {wanted!r}: give onnx or openvino, optionally :fp32, :fp16 or :int8")
        precision = precision or "fp32"
    return fmt, precision


def choose_export(model: ModelDir | TwoStageDir, wanted: str | None, log,
                  validation: Path | None = None) -> tuple[str, str]:
    """The (format, precision) the component runs: the one asked for (`onnx`, `openvino:int8`...) or the
    fastest export whose parity passed (for a two-stage model: in both stages), exported now (ONNX FP32)
    when there is none. An export that failed its gate is refused: the device would give other answers
    than the model."""
    from magiccards.serve.backends import available, passed_exports

    from .export import export

    stages = model.stages
    if wanted:
        fmt, precision = _wanted_export(wanted)
    else:
        found = [e for e in available(stages[0]) if all(e in available(s) for s in stages[1:])]
        fmt, precision = found[0] if found else ("onnx", "fp32")
    if any((fmt, precision) not in passed_exports(s) or not s.export_file(fmt, precision).is_file() for s in stages):
        for stage in stages:
            failed = [r for r in stage.parity_records() if (r.get("format"), r.get("precision")) == (fmt, precision)
                      and stage.record_matches(r) and r.get("passed") is False]
            if failed and stage.export_file(fmt, precision).is_file():
                raise GreengrassError(f"the {fmt} {precision} export of {stage.path} failed its parity check "
                                      "(exports/parity.json): choose another with --export, e.g. onnx:fp32")
        log(f"exporting {fmt} {precision} first (magiccards export)")
        record = export(model.path, fmt, precision, validation=validation, log=log)
        if not record["passed"]:
            raise GreengrassError(f"the {fmt} {precision} export failed its parity check; choose another with "
                                  "--export, e.g. onnx:fp32")
    return fmt, precision


def _copy_model(model: ModelDir | TwoStageDir, fmt: str, precision: str, target: Path) -> None:
    """The model directory with only the export it runs (the predictor checks its parity record); a two-stage
    model's card and both stages, each so."""
    target.mkdir(parents=True)
    for path in model.path.iterdir():
        if path.is_file() and path.name != TRAINING_STATE:
            shutil.copy2(path, target / path.name)
    if isinstance(model, TwoStageDir):
        for folder, stage in ((DETECTOR_DIR, model.detector), (CLASSIFIER_DIR, model.classifier)):
            _copy_model(stage, fmt, precision, target / folder)
        return
    exports = target / model.exports_dir.name
    exports.mkdir()
    for path in model.exports_dir.iterdir():
        if path.is_file() and path.name != PARITY:
            shutil.copy2(path, exports / path.name)
    chosen = model.export_file(fmt, precision).parent
    (exports / chosen.name).mkdir()
    for name in EXPORT_FILES[fmt]:
        shutil.copy2(chosen / name, exports / chosen.name / name)
    records = [r for r in model.parity_records() if (r.get("format"), r.get("precision")) == (fmt, precision)]
    write_text_atomic(exports / PARITY, json.dumps(records, indent=1))


def runtime_modules() -> dict[str, str]:
    """{module name: source file} of every magiccards module the inference script imports, found by
    importing it in a fresh interpreter (so the list follows the code, not a hand-kept copy)."""
    probe = ("import json, sys, runpy; sys.argv = ['infer']; import magiccards.deeplens.greengrass_infer; "
             "import magiccards.serve.predictor, magiccards.serve.predict_files, magiccards.serve.edge_backends, "
             "magiccards.serve.loader; "
             "print(json.dumps({n: m.__file__ for n, m in sys.modules.items() "
             "if n.split('.')[0] == 'magiccards' and getattr(m, '__file__', None)}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if done.returncode != 0:
        raise GreengrassError(f"cannot list the inference script's modules: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)


def _copy_modules(target: Path) -> None:
    for name, source in runtime_modules().items():
        if name == "magiccards.deeplens.greengrass_infer":
            continue
        parts = name.split(".")
        is_package = Path(source).name == "__init__.py"
        path = target.joinpath(*parts, "__init__.py") if is_package else target.joinpath(*parts[:-1], parts[-1] + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, path)
    for folder in [p for p in target.rglob("*") if p.is_dir()]:  # every folder on the way is a package
        (folder / "__init__.py").touch(exist_ok=True)


def requirements(fmt: str) -> list[str]:
    """The device's pip requirements: the versions this project runs and tests with."""
    runtime = EXPORT_FORMATS[fmt][0]
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in (runtime, *RUNTIME_PACKAGES)]
    return pins + [f"awsiotsdk=={AWSIOTSDK}"]


def recipe(name: str, version: str, uri: str, model: ModelDir | TwoStageDir, fmt: str, precision: str, topic: str,
           source: str) -> dict:
    """The component recipe (a dict; written as JSON and YAML)."""
    root = "{artifacts:decompressedPath}/" + ARTIFACT
    python = "{work:path}/venv/bin/python"
    run = f"{python} -u {root}/infer.py --model {root}/model"  # the settings come as environment variables
    settings = {variable: f"{{configuration:/{key}}}" for key, variable in SETTINGS.items()}
    return {
        "RecipeFormatVersion": RECIPE_FORMAT,
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentType": "aws.greengrass.generic",
        "ComponentDescription": (f"{model.task} of {len(model.classes)} classes ({', '.join(model.classes[:6])}"
                                 f"{', ...' if len(model.classes) > 6 else ''}) with {model.network or 'a'} model on "
                                 f"{EXPORT_FORMATS[fmt][0]} {precision}; results to IoT Core"),
        "ComponentPublisher": "deeplens-magiccards",
        "ComponentConfiguration": {"DefaultConfiguration": {
            "Source": source, "Topic": topic, "IntervalSeconds": 1.0, "ScoreThreshold": 0.5,
            "Backend": EXPORT_FORMATS[fmt][0] + ":" + precision,
            "accessControl": {"aws.greengrass.ipc.mqttproxy": {f"{name}:mqttproxy:1": {
                "policyDescription": "Publish the inference results to AWS IoT Core",
                "operations": ["aws.greengrass#PublishToIoTCore"], "resources": [topic]}}},
        }},
        "Manifests": [{
            "Platform": {"os": "linux"},
            "Lifecycle": {
                "Setenv": {"PYTHONPATH": f"{root}/lib"},
                "Install": {"Script": (f"python3 -m venv {{work:path}}/venv && {python} -m pip install "
                                       f"--disable-pip-version-check -q -r {root}/requirements.txt"),
                            "Timeout": 1800},
                "Run": {"Script": run, "Setenv": settings, "RequiresPrivilege": False},
            },
            "Artifacts": [{"URI": uri, "Unarchive": "ZIP", "Permission": {"Read": "OWNER", "Execute": "NONE"}}],
        }],
    }


def validate_recipe(value: dict) -> None:
    """Check a recipe against the documented schema (component-recipe-reference): required fields, name
    and semantic version, manifests, lifecycle steps, artifacts, and that every `{configuration:/KEY}`
    a script uses has a default. Raises GreengrassError naming the first problem."""
    def fail(why: str):
        raise GreengrassError(f"invalid component recipe: {why}")

    for key in ("RecipeFormatVersion", "ComponentName", "ComponentVersion", "Manifests"):
        if key not in value:
            fail(f"{key} is missing")
    if value["RecipeFormatVersion"] != RECIPE_FORMAT:
        fail(f"RecipeFormatVersion must be {RECIPE_FORMAT}")
    if not NAME_PATTERN.match(str(value["ComponentName"])) or str(value["ComponentName"]).startswith("aws."):
        fail(f"ComponentName {value['ComponentName']!r}: letters, digits, . _ - only, at most 128, not aws.*")
    if not SEMVER.match(str(value["ComponentVersion"])):
        fail(f"ComponentVersion {value['ComponentVersion']!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    defaults = value.get("ComponentConfiguration", {}).get("DefaultConfiguration", {})
    if not isinstance(defaults, dict):
        fail("ComponentConfiguration.DefaultConfiguration must be an object")
    manifests = value["Manifests"]
    if not isinstance(manifests, list) or not manifests:
        fail("Manifests must be a non-empty list")
    for manifest in manifests:
        if manifest.get("Platform", {}).get("os", "*") not in PLATFORM_OS:
            fail(f"Platform os {manifest['Platform']['os']!r} is not one of {sorted(PLATFORM_OS)}")
        unknown = set(manifest.get("Lifecycle", {})) - LIFECYCLE_STEPS
        if unknown:
            fail(f"unknown lifecycle steps {sorted(unknown)}")
        for step, body in manifest.get("Lifecycle", {}).items():
            script = body if isinstance(body, str) else body.get("Script", "") if step != "Setenv" else ""
            if "{configuration:" in str(script):
                fail(f"{step}'s script splices a configuration value into shell text; hand it over in Setenv")
            for key in re.findall(r"\{configuration:/([^}]+)\}", json.dumps(body)):
                if key.split("/")[0] not in defaults:
                    fail(f"{step} uses {{configuration:/{key}}}, which DefaultConfiguration does not define")
        for artifact in manifest.get("Artifacts", []):
            uri = str(artifact.get("URI", ""))
            if not uri.startswith(("docker:", "greengrass:")) and not _is_s3_object(uri):
                fail(f"artifact URI {uri!r} is not s3://BUCKET/KEY")
            if artifact.get("Unarchive", "NONE") not in ("NONE", "ZIP"):
                fail(f"Unarchive {artifact['Unarchive']!r} is not NONE or ZIP")


def check_topic(topic: str) -> None:
    """Refuse a topic AWS IoT would not take for PublishToIoTCore (or one with characters outside its safe set)."""
    if "#" in topic or "+" in topic:
        raise GreengrassError(f"--topic {topic!r}: a topic to publish to has no wildcards (# +)")
    if topic.startswith("$") and not topic.startswith("$aws/things/"):
        raise GreengrassError(f"--topic {topic!r}: topics starting with $ are reserved (but $aws/things/NAME/...)")
    if not TOPIC_PATTERN.match(topic) or len(topic.encode()) > 256 or topic.count("/") > 7:
        raise GreengrassError(f"--topic {topic[:80]!r}: use letters, digits and _ . : @ = - between single slashes, "
                              "at most 256 bytes and 7 slashes (AWS IoT Core's topic rules)")


def check_source(source: str) -> None:
    """A camera index, or a video or folder path on the device: printable text (it is handed over as data)."""
    if not source or CONTROL.search(source) or len(source) > 4096:
        raise GreengrassError(f"--source {source[:80]!r}: give a camera index (0) or a path on the device, "
                              "without control characters")


def _is_s3_object(uri: str) -> bool:
    try:
        return bool(S3Uri.parse(uri).key)
    except UserError:
        return False


def _yaml(value: dict) -> str:
    import yaml

    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=1000)


def build(model_path: Path, out: Path, *, bucket: str | None = None, export: str | None = None,
          name: str | None = None, version: str = "1.0.0", topic: str | None = None, source: str = "0",
          validation: Path | None = None, log=print) -> Component:
    """Write the component of the model at `model_path` into `out` (recipes/ and artifacts/)."""
    model = open_model(Path(model_path))
    name = name or default_name(model)
    if not NAME_PATTERN.match(name):
        raise GreengrassError(f"--name {name!r}: letters, digits, '.', '_' and '-' only, at most 128 characters")
    if not SEMVER.match(version):
        raise GreengrassError(f"--version {version!r} is not a semantic version such as 1.0.0")
    bucket_uri = (bucket or f"s3://{PLACEHOLDER_BUCKET}/greengrass").rstrip("/")
    try:
        S3Uri.parse(bucket_uri, "--bucket")
    except UserError as e:
        raise GreengrassError(str(e)) from None
    if CONTROL.search(bucket_uri) or " " in bucket_uri:
        raise GreengrassError(f"--bucket {bucket_uri[:80]!r}: an S3 prefix without spaces or control characters")
    topic = topic or f"magiccards/{name}/results"
    check_topic(topic)
    check_source(source)
    fmt, precision = choose_export(model, export, log, validation)
    model = open_model(model.path)
    uri = f"{bucket_uri}/{name}/{version}/{ARTIFACT}.zip"
    value = recipe(name, version, uri, model, fmt, precision, topic, source)
    validate_recipe(value)
    out = Path(out)
    artifact = out / "artifacts" / name / version / f"{ARTIFACT}.zip"
    recipes = out / "recipes"
    with writing(f"the component folder {out}"):
        recipes.mkdir(parents=True, exist_ok=True)
        artifact.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="magiccards-greengrass-") as scratch:
            staged = Path(scratch) / ARTIFACT
            staged.mkdir()
            shutil.copy2(Path(__file__).with_name("greengrass_infer.py"), staged / "infer.py")
            _copy_model(model, fmt, precision, staged / "model")
            _copy_modules(staged / "lib")
            (staged / "requirements.txt").write_text("\n".join(requirements(fmt)) + "\n")
            recipe_json = recipes / f"{name}-{version}.json"
            recipe_yaml = recipes / f"{name}-{version}.yaml"
            # the artifact and both recipes appear together (or the old ones stay): never a JSON without its YAML
            with atomic_paths(artifact, recipe_json, recipe_yaml) as (zip_tmp, json_tmp, yaml_tmp):
                with zipfile.ZipFile(zip_tmp, "w", zipfile.ZIP_DEFLATED) as archive:
                    for path in sorted(staged.rglob("*")):
                        if path.is_file():
                            archive.write(path, path.relative_to(staged).as_posix())  # unpacked into decompressedPath/magiccards-edge
                json_tmp.write_text(json.dumps(value, indent=2))
                yaml_tmp.write_text(_yaml(value))
    return Component(name, version, value, recipe_json, recipe_yaml, artifact, (fmt, precision))
