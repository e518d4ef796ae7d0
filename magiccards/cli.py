"""The `magiccards` command line: parses arguments and calls one function per verb."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .errors import HyperparameterError, UserError

SHOWN_PROBLEMS = 15


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="render a synthetic card dataset (from your own card images with --faces)",
                       description="Render cards on varied backgrounds, labelled: your own card images (--faces DIR: one "
                                   "image per card, or a folder of images per class), or procedural designs: Magic-like "
                                   "faces, playing cards (class names such as queen-of-hearts or 9-of-clubs) and card "
                                   "backs (back-1, back-2, ...).")
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--task", choices=("classification", "detection"), default="classification",
                   help="one card per photo in class folders, or scenes of cards with VOC boxes (default classification)")
    p.add_argument("--count", type=int, default=500, help="number of images (default 500)")
    p.add_argument("--faces", type=Path, default=None, metavar="DIR",
                   help="card images to draw: DIR/<class>.png (one per class) or DIR/<class>/*.png (JPEG, PNG, WebP; any "
                        "size; transparency kept). Make them from photos with `magiccards faces`")
    p.add_argument("--classes", default=None,
                   help="number of classes, or comma-separated class names (default 6; with --faces: every card of DIR, "
                        "or the names given)")
    p.add_argument("--distractors", type=float, default=0.0, metavar="P",
                   help="detection: share of scenes that also hold 1-2 unlabelled cards of other designs (backs, "
                        "Magic-like faces), so a detector learns to leave cards it was not taught alone (default 0)")
    p.add_argument("--size", type=int, default=None,
                   help="image side in pixels (default 256 for classification, 512 for detection)")
    p.add_argument("--backgrounds", type=Path, default=None, help="folder of real photos used as backgrounds")
    p.add_argument("--fans", type=float, default=0.0, metavar="P",
                   help="detection: share of scenes that also hold a fan of overlapping cards (default 0)")
    p.add_argument("--max-cards", type=int, default=4, help="most cards per detection scene (default 4)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same images, whatever --workers (default 0)")
    _add_workers(p)
    p.set_defaults(func=_run_synth)


def _add_faces(sub) -> None:
    p = sub.add_parser("faces", help="cut flat card images from a photo of each card (for synth --faces)",
                       description="Find the card in each photo (one card, flat on a plain surface of another colour), "
                                   "warp it flat to a portrait image at the card's aspect ratio, and write OUT/<name>.png; "
                                   "a contact sheet shows what was cut. Photos with no card found are listed and skipped.")
    p.add_argument("photos", type=Path, help="a folder of photos (or one photo)")
    p.add_argument("out", type=Path, help="output folder of card images")
    p.add_argument("--names", default=None,
                   help="comma-separated names for the photos in sorted order (default: each photo's file name)")
    p.add_argument("--aspect", default=None, metavar="W:H",
                   help="the cards' width:height, e.g. 63:88 (default: measured on each photo)")
    p.add_argument("--sheet", type=Path, default=None,
                   help="the contact sheet PNG (default: OUT-contact-sheet.png beside OUT)")
    p.set_defaults(func=_run_faces)


def _add_workers(p) -> None:
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")


def _add_pack(sub) -> None:
    p = sub.add_parser("pack", help="pack a dataset into im2rec-compatible .lst/.rec/.idx",
                       description="Pack class folders (classification) or VOC / COCO / SageMaker JSON / Ground Truth manifest / CSV "
                                   "annotations (detection) into train and validation RecordIO files.")
    p.add_argument("input", type=Path, help="dataset folder, COCO .json, Ground Truth .manifest or boxes .csv")
    p.add_argument("out", type=Path, help="output folder")
    from .data.formats import CHOICES
    p.add_argument("--format", default="auto", choices=CHOICES,
                   help="input layout (default: recognised from the input)")
    p.add_argument("--images", type=Path, default=None, help="image folder, when not the default beside the annotations")
    p.add_argument("--classes", type=Path, default=None,
                   help="classes.txt fixing class names and order (default: INPUT/classes.txt when there is one)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share held out for validation (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/validation split (default 0)")
    p.add_argument("--resize", type=int, default=None, help="shrink so the shorter side is this many pixels")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality when re-encoding (default 95)")
    p.add_argument("--pass-through", action="store_true", help="store the original JPEG bytes unchanged")
    p.add_argument("--one-class", default=None, metavar="NAME",
                   help="detection: pack every object as class NAME (a class-agnostic detector, e.g. --one-class card)")
    p.add_argument("--crops", action="store_true",
                   help="detection: pack the square around each box as a classification image of its class (the "
                        "photos are split first: no photo gives crops to both splits)")
    _add_workers(p)
    p.set_defaults(func=_run_pack)


def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="statistics and a PNG contact sheet of a .rec file")
    p.add_argument("rec", type=Path, help="a .rec file written by pack or im2rec")
    p.add_argument("--classes", type=Path, default=None, help="classes.txt (default: the one beside the .rec)")
    p.add_argument("--sheet", type=Path, default=None, help="contact sheet PNG (default: FILE.sheet.png)")
    p.add_argument("--samples", type=int, default=24, help="images on the contact sheet (default 24)")
    p.add_argument("--charts", type=Path, default=None,
                   help="PNG of class balance, image sizes, box sizes and centres (default: FILE.stats.png)")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.set_defaults(func=_run_inspect)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train on a pack folder, laid out and run like a SageMaker job",
                       description="Train on DATA_DIR (the output of `magiccards pack`). Every other --key value "
                                   "is a hyperparameter, as in a SageMaker job (e.g. --epochs 5 --network resnet18_v1b).")
    p.add_argument("data", type=Path, help="folder with train.rec (and validation.rec, classes.txt)")
    p.add_argument("--job-dir", type=Path, default=Path("training-job"),
                   help="the /opt/ml-like job folder; the model lands in JOB_DIR/model (default ./training-job)")
    p.add_argument("--pretrained", type=Path, default=None, help="folder of pretrained .params (channel 'pretrained')")
    p.add_argument("--model", type=Path, default=None, help="earlier model directory to continue from (channel 'model')")
    p.add_argument("--fresh", action="store_true",
                   help="start anew: move the job folder's checkpoints aside instead of resuming from them")
    p.add_argument("--docker", action="store_true", help="run inside the training image, as SageMaker does")
    p.add_argument("--image", default="magiccards:cpu", help="image for --docker (default magiccards:cpu)")
    p.add_argument("--instance-count", type=int, default=1,
                   help="with --docker: hosts (containers) of a distributed job, on a private network")
    p.add_argument("--input-mode", choices=("File", "Pipe"), default="File",
                   help="File (channels as files) or Pipe (records streamed through FIFOs, one per pass)")
    p.set_defaults(func=_run_train, accepts_hyperparameters=True, own_parser=p)


def _hyperparameters(extra: list[str]) -> dict[str, str]:
    """`--key value` pairs (or --key=value) as SageMaker-style string hyperparameters."""
    hp, i = {}, 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise HyperparameterError(f"expected --hyperparameter value, got {arg!r}")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            i += 1
        elif i + 1 < len(extra):
            key, value = arg[2:], extra[i + 1]
            i += 2
        else:
            raise HyperparameterError(f"hyperparameter {arg} needs a value")
        hp[key.replace("-", "_")] = value
    return hp


def _check_train_arguments(args) -> None:
    """Every mistake the job would find in its hyperparameters, found before a job folder is laid out."""
    from .data.labels import task_of_rec
    from .train.hyperparameters import check
    task = None if "task" in args.hyperparameters else task_of_rec(Path(args.data) / "train.rec")
    check(args.hyperparameters, task)
    if args.instance_count < 1:
        raise UserError("--instance-count must be at least 1")
    if args.instance_count > 1 and (not args.docker or args.input_mode != "File" or args.pretrained or args.model):
        raise UserError("--instance-count > 1 needs --docker and File mode (no --model/--pretrained)")


def _refuse_misspelt_options(args) -> None:
    """`--job_dir` is the option --job-dir, not a hyperparameter: say so (commands that take hyperparameters)."""
    from .train.hyperparameters import SPECS
    options = {a.lstrip("-") for action in args.own_parser._actions for a in action.option_strings}
    for key in args.hyperparameters:
        if key not in SPECS and key.replace("_", "-") in options:
            raise HyperparameterError(f"--{key} is not a hyperparameter; did you mean the option --{key.replace('_', '-')}?")


def _run_train(args) -> int:
    _check_train_arguments(args)
    extra = {k: v for k, v in (("pretrained", args.pretrained), ("model", args.model)) if v is not None}
    if args.instance_count > 1:
        from .container.cluster import run_cluster
        model_dir = run_cluster(args.data, args.job_dir, args.hyperparameters, args.instance_count, image=args.image,
                                fresh=args.fresh)
    elif args.docker:
        from .container.docker_run import run_docker
        model_dir = run_docker(args.data, args.job_dir, args.hyperparameters, image=args.image, extra_channels=extra,
                               input_mode=args.input_mode, fresh=args.fresh)
    else:
        from .container.local_run import run_local
        model_dir = run_local(args.data, args.job_dir, args.hyperparameters, extra_channels=extra,
                              input_mode=args.input_mode, fresh=args.fresh)
    print(f"model directory: {model_dir}")
    return 0


def _add_image(sub) -> None:
    p = sub.add_parser("image", help="build the training image (Dockerfile) with the local Docker engine")
    p.add_argument("--gpu", action="store_true",
                   help="the GPU variant: MXNet for CUDA 11.2 and NVIDIA's libraries (default tag magiccards:gpu)")
    p.add_argument("--tag", default=None, help="image tag (default magiccards:cpu, or magiccards:gpu with --gpu)")
    p.add_argument("--base", default=None, help="base image (default python:3.11-slim-bookworm, else the local one)")
    p.add_argument("--weights", nargs="+", default=None, metavar="NAME_OR_DIR",
                   help="bake ImageNet weights into the image: GluonCV model names (e.g. mobilenet0.25 resnet18_v1b; "
                        "from the model store or downloaded) or folders of .params files")
    p.add_argument("--no-cache", action="store_true")
    p.set_defaults(func=_run_image)


def _run_image(args) -> int:
    from .container.image import DEFAULT_TAG, GPU_TAG, build
    tag = args.tag or (GPU_TAG if args.gpu else DEFAULT_TAG)
    r = build(tag, base=args.base, variant="gpu" if args.gpu else "cpu", no_cache=args.no_cache, weights=args.weights)
    print(f"built {r['tag']} from {r['base']} in {r['seconds']:.0f} s; size {r['size_bytes'] / 1e6:.0f} MB")
    return 0


def _add_weights(sub) -> None:
    p = sub.add_parser("weights", help="fetch GluonCV ImageNet weights into a folder ready to be a 'pretrained' channel",
                       description="Downloads from MXNET_GLUON_REPO (default: Apache's GluonCV repository) with a "
                                   "progress bar and GluonCV's SHA-1 check; names already in the folder are kept.")
    p.add_argument("names", nargs="+", help="GluonCV model names, e.g. mobilenet0.25 (ssd_300_mobilenet0.25's base), "
                                            "resnet18_v1b, vgg16_atrous")
    p.add_argument("--out", type=Path, required=True, help="folder to put the .params files in")
    p.set_defaults(func=_run_weights)


def _run_weights(args) -> int:
    from .files import writing
    from .train import weights
    for name in args.names:
        with writing(f"the weights folder {args.out}"):
            found = weights.in_folder(name, args.out)
            if found is None:
                found = weights.download(name, args.out)
        print(f"{name}: {found}")
    print(f"use it as the 'pretrained' channel: magiccards train DATA --pretrained {args.out} ...")
    return 0


def _add_base_image(sub) -> None:
    p = sub.add_parser("base-image", help="build the local Debian/Python base image (no registry needed)")
    p.add_argument("--tag", default="magiccards/base:bookworm")
    p.add_argument("--rebuild", action="store_true", help="build even when the image exists")
    p.set_defaults(func=_run_base_image)


def _run_base_image(args) -> int:
    from .container import base_image
    tag = base_image.build(args.tag) if args.rebuild else base_image.ensure(args.tag)
    print(f"base image ready: {tag}")
    return 0


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="serve a model over HTTP as a SageMaker endpoint does (/ping, /invocations)",
                       description="The inference server of the image (`docker run IMAGE serve`), on this machine. "
                                   "SAGEMAKER_MODEL_SERVER_WORKERS, SAGEMAKER_MODEL_SERVER_TIMEOUT, "
                                   "SAGEMAKER_MAX_PAYLOAD_IN_MB and MAGICCARDS_BACKEND apply; options win.")
    p.add_argument("model", type=Path, help="a model directory (a job's model/ folder) or its model.tar.gz")
    p.add_argument("--port", type=int, default=None, help="port (default $SAGEMAKER_BIND_TO_PORT or 8080)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    p.add_argument("--timeout", type=float, default=None, help="seconds a request may take (default 60)")
    _add_backend(p)
    p.set_defaults(func=_run_serve)


def _add_backend(p) -> None:
    p.add_argument("--backend", default=None, metavar="NAME",
                   help="auto, mxnet, onnxruntime or openvino, optionally with a precision (openvino:int8); "
                        "default $MAGICCARDS_BACKEND or auto: the fastest export whose parity passed")


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a model for ONNX Runtime or OpenVINO, checked against MXNet",
                       description="Writes MODEL/exports/<format>-<precision>/ and a parity record (exports/parity.json) "
                                   "measured on real validation images; `serve` and `predict` pick it up.")
    p.add_argument("model", type=Path, help="a model directory (a job's model/ folder), or a two-stage model (both stages)")
    p.add_argument("--format", dest="export_format", required=True, help="onnx or openvino")
    p.add_argument("--precision", default="fp32", help="fp32 (default), fp16 or int8")
    p.add_argument("--validation", type=Path, default=None,
                   help="the .rec the parity check runs on (default: the job's validation channel)")
    p.add_argument("--calibration", type=Path, default=None,
                   help="int8: the .rec calibrated on (default: the validation records)")
    p.add_argument("--classifier-validation", type=Path, default=None,
                   help="a two-stage model: the .rec its classifier's parity check runs on (default: the records of "
                        "the job it was combined from; --validation is then the detector's, and the whole's)")
    p.add_argument("--images", type=int, default=200, help="validation images the parity check uses (default 200)")
    p.set_defaults(func=_run_export)


def _run_export(args) -> int:
    from .deeplens.export import export
    export(args.model, args.export_format, args.precision, validation=args.validation,
           calibration=args.calibration, images=args.images, classifier_validation=args.classifier_validation)
    return 0  # a failed gate is reported and recorded; the export is kept for inspection


def _add_deeplens(sub) -> None:
    p = sub.add_parser("deeplens", help="convert, check, package and deploy a model for AWS DeepLens",
                       description="The DeepLens journey: package (the import archive), check (the real Model "
                                   "Optimizer), lambda (the inference function), deploy (S3 + Lambda).")
    verbs = p.add_subparsers(dest="deeplens_command", required=True, metavar="STEP")
    pkg = verbs.add_parser("package", help="the archive DeepLens imports: symbol, params, deeplens.json")
    pkg.add_argument("model", type=Path, help="a model directory (a job's model/ folder), or a two-stage model")
    pkg.add_argument("--out", type=Path, required=True, help="the archive to write (FILE.tar.gz)")
    pkg.add_argument("--validation", type=Path, default=None,
                     help="the .rec the parity checks run on (default: the job's validation channel; a two-stage "
                          "model's: its detector's)")
    pkg.add_argument("--classifier-validation", type=Path, default=None,
                     help="a two-stage model: the .rec its classifier's checks run on (default: the records of the "
                          "classifier's job)")
    pkg.add_argument("--images", type=int, default=100, help="validation images of the parity checks (default 100)")
    pkg.add_argument("--no-check", action="store_true", help="skip the Model Optimizer check")
    pkg.set_defaults(func=_run_deeplens_package)
    chk = verbs.add_parser("check", help="convert a package with the Model Optimizer (MXNet front end) and "
                                         "compare the IR with MXNet")
    chk.add_argument("package", type=Path, help="a DeepLens package (FILE.tar.gz)")
    chk.add_argument("--validation", type=Path, default=None,
                     help="a .rec of validation images (default: the one the package's parity check used)")
    chk.add_argument("--classifier-validation", type=Path, default=None,
                     help="a two-stage package: the classifier's .rec (default: the one its parity check used)")
    chk.add_argument("--images", type=int, default=100, help="validation images compared (default 100)")
    chk.set_defaults(func=_run_deeplens_check)
    lam = verbs.add_parser("lambda", help="the inference function for the device (lambda_function.py, labels, config)")
    lam.add_argument("model", type=Path, help="a model directory (a job's model/ folder), or a two-stage model")
    lam.add_argument("--out", type=Path, required=True, help="the folder to write the function into")
    lam.add_argument("--score-threshold", type=float, default=0.5, help="detections below are not published")
    lam.set_defaults(func=_run_deeplens_lambda)
    sim = verbs.add_parser("simulate", help="run the Lambda here, on a folder of frames, with stand-ins of the device's "
                                            "libraries (the real Model Optimizer, the IR on OpenVINO)")
    sim.add_argument("function", type=Path, help="the folder `deeplens lambda` wrote")
    sim.add_argument("--package", type=Path, required=True, help="the DeepLens package (FILE.tar.gz)")
    sim.add_argument("--frames", type=Path, required=True, help="a folder of .jpg/.png frames")
    sim.add_argument("--out", type=Path, required=True, help="where published.jsonl and annotated.jpg go")
    sim.add_argument("--max-frames", type=int, default=None, help="stop after this many (default: all frames)")
    sim.set_defaults(func=_run_deeplens_simulate)
    dep = verbs.add_parser("deploy", help="package, upload to a deeplens- bucket, create the Lambda and a version")
    dep.add_argument("source", help="a model directory, or a SageMaker training job name starting with deeplens-")
    dep.add_argument("--bucket", default=None, help="a bucket whose name starts with deeplens- (default "
                                                    "deeplens-magiccards-ACCOUNT-REGION, created when missing)")
    dep.add_argument("--validation", type=Path, default=None,
                     help="the .rec the package's parity is checked on (needed for a job name)")
    dep.add_argument("--classifier-validation", type=Path, default=None,
                     help="a two-stage model: the .rec its classifier's parity is checked on")
    dep.add_argument("--function", default=None, help="Lambda name (default deeplens-<model>)")
    dep.add_argument("--role", default="AWSDeepLensLambdaRole", help="the Lambda's role, a name or an ARN")
    dep.add_argument("--score-threshold", type=float, default=0.5, help="detections below are not published")
    dep.set_defaults(func=_run_deeplens_deploy)


def _run_deeplens_package(args) -> int:
    from .deeplens.model_optimizer import SETUP, check, find_mo
    from .deeplens.package import package
    value = package(args.model, args.out, validation=args.validation, images=args.images,
                    classifier_validation=args.classifier_validation)
    if args.no_check:
        return 0
    if find_mo() is None:
        print(f"the Model Optimizer check was skipped: its venv is not here ({SETUP})")
        return 0
    records = check(args.out, images=args.images)  # on the records the package's parity used
    return 0 if value["parity"]["passed"] and all(r["passed"] for r in records) else 1


def _run_deeplens_check(args) -> int:
    from .deeplens.model_optimizer import check
    records = check(args.package, args.validation, images=args.images, classifier_validation=args.classifier_validation)
    return 0 if all(r["passed"] for r in records) else 1


def _run_deeplens_lambda(args) -> int:
    from .deeplens.lambda_package import write_lambda
    folder = write_lambda(args.model, args.out, score_threshold=args.score_threshold)
    files = ", ".join(sorted(p.name for p in folder.iterdir() if p.is_file()))
    print(f"wrote {folder}: {files} (handler lambda_function.function_handler, python3.7)")
    return 0


def _run_deeplens_simulate(args) -> int:
    from .deeplens.simulate import simulate
    simulate(args.function, args.package, args.frames, args.out, max_frames=args.max_frames)
    return 0


def _run_deeplens_deploy(args) -> int:
    from .deeplens.deploy import deploy
    deploy(args.source, bucket=args.bucket, validation=args.validation, function=args.function, role=args.role,
           score_threshold=args.score_threshold, classifier_validation=args.classifier_validation)
    return 0


def _add_greengrass(sub) -> None:
    p = sub.add_parser("greengrass", help="an AWS IoT Greengrass v2 component that runs the model on a device",
                       description="Writes OUT/recipes/<name>-<version>.json|yaml and OUT/artifacts/<name>/<version>/"
                                   "magiccards-edge.zip (the export, the classes, an inference script publishing "
                                   "to IoT Core); --publish uploads it and creates the component version.")
    p.add_argument("model", type=Path, help="a model directory (a job's model/ folder)")
    p.add_argument("--out", type=Path, required=True, help="the folder the recipe and artifacts go to")
    p.add_argument("--bucket", default=None, help="s3://BUCKET/PREFIX the artifact is uploaded to")
    p.add_argument("--export", default=None, metavar="FORMAT[:PRECISION]",
                   help="onnx, openvino, openvino:int8 ... (default: the fastest export that passed parity, "
                        "else onnx:fp32, exported now)")
    p.add_argument("--name", default=None, help="component name (default com.magiccards.<job folder>)")
    p.add_argument("--version", dest="component_version", default="1.0.0", help="semantic version (default 1.0.0)")
    p.add_argument("--topic", default=None, help="IoT Core topic (default magiccards/<name>/results)")
    p.add_argument("--source", default="0", help="default camera index, video or folder on the device (default 0)")
    p.add_argument("--validation", type=Path, default=None,
                   help="when the export must be made first: the .rec its parity is checked on "
                        "(default: the job's validation channel)")
    p.add_argument("--publish", action="store_true", help="upload to --bucket and create the component version")
    p.set_defaults(func=_run_greengrass)


def _run_greengrass(args) -> int:
    from .deeplens.greengrass import build
    if args.publish and not args.bucket:
        raise UserError("--publish uploads the artifact to S3: give --bucket s3://BUCKET/PREFIX too")
    component = build(args.model, args.out, bucket=args.bucket, export=args.export, name=args.name,
                      version=args.component_version, topic=args.topic, source=args.source,
                      validation=args.validation)
    fmt, precision = component.export
    print(f"component {component.name} {component.version} runs {fmt} {precision}")
    print(f"  recipe:   {component.recipe_json} (and .yaml)")
    print(f"  artifact: {component.artifact} -> {component.artifact_uri}")
    if args.publish:
        from .deeplens.greengrass_publish import publish
        publish(component)
    else:
        print(f"  try it on a core device: sudo /greengrass/v2/bin/greengrass-cli deployment create "
              f"--recipeDir {args.out / 'recipes'} --artifactDir {args.out / 'artifacts'} "
              f"--merge \"{component.name}={component.version}\"")
    return 0


def _run_serve(args) -> int:
    from .serve.server import ServerConfig, serve
    config = ServerConfig.from_environment(port=args.port, workers=args.workers, timeout=args.timeout,
                                           backend=args.backend, host=args.host)
    return serve(args.model, config)


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="run a model on images, folders, a video or a camera; annotated pictures out",
                       description="Writes <name>.jpg (annotated) and <name>.json per image; per video or camera, "
                                   "a folder of annotated frames and one JSON.")
    p.add_argument("model", type=Path, help="a model directory or its model.tar.gz")
    p.add_argument("inputs", nargs="+", help="image files, folders of images, video files, or a camera index (0)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--score-threshold", type=float, default=0.3, help="detection: smallest score kept (default 0.3)")
    p.add_argument("--top-k", type=int, default=3, help="classification: classes written on the picture (default 3)")
    p.add_argument("--every", type=int, default=1, help="video: predict every N-th frame (default 1)")
    p.add_argument("--frames", type=int, default=None, help="video or camera: stop after N predicted frames")
    _add_backend(p)
    p.set_defaults(func=_run_predict)


def _run_predict(args) -> int:
    if not 0 <= args.score_threshold <= 1 or args.top_k < 1 or args.every < 1 or (args.frames or 1) < 1:
        raise UserError("--score-threshold lies in [0, 1]; --top-k, --every and --frames are at least 1")
    from .serve.predict_files import predict_inputs
    from .serve.loader import load
    _sigterm_exits()
    with load(args.model, backend=args.backend) as predictor:  # an unpacked model.tar.gz is removed after
        print(predictor.describe())
        counts = predict_inputs(predictor, args.inputs, args.out, score_threshold=args.score_threshold,
                                top_k=args.top_k, every=args.every, frames=args.frames)
    skipped = f", {counts['skipped']} skipped (not images)" if counts["skipped"] else ""
    print(f"predicted {counts['images']} image(s) and {counts['frames']} frame(s){skipped}; results in {args.out}")
    return 0


def _add_combine(sub) -> None:
    p = sub.add_parser("combine", help="a two-stage model: a detector finds the cards, a classifier names each one",
                       description="Put a detector and a classifier (trained on `pack --crops` of the same photos) "
                                   "together as one model that serve, predict, invoke and docker run IMAGE serve take "
                                   "as they take a detector: boxes of the detector, class-agnostic NMS, each box's "
                                   "square crop named by the classifier, score = box score x class probability.")
    p.add_argument("detector", type=Path, help="the detector: a model directory, its model.tar.gz, or a job's output")
    p.add_argument("classifier", type=Path, help="the classifier of the crops: the same kinds")
    p.add_argument("--out", type=Path, required=True, help="the two-stage model: a new folder, or a .tar.gz archive")
    p.add_argument("--nms", type=float, default=0.45, help="class-agnostic NMS IoU threshold (default 0.45)")
    p.add_argument("--classes-per-box", type=int, default=2, help="classes answered per box (default 2)")
    p.add_argument("--max-boxes", type=int, default=32, help="most boxes named per image (default 32)")
    p.add_argument("--box-threshold", type=float, default=0.05,
                   help="smallest detector score of a box to name (default 0.05: such a box scores under 0.05 "
                        "whatever its class, and naming it costs a classifier run)")
    p.set_defaults(func=_run_combine)


def _run_combine(args) -> int:
    from .combine import combine
    model = combine(args.detector, args.classifier, args.out, {
        "nms_iou": args.nms, "classes_per_box": args.classes_per_box, "max_boxes": args.max_boxes,
        "box_threshold": args.box_threshold})
    print(f"two-stage model written to {args.out}: detector {model.detector.network} ({len(model.detector.classes)} "
          f"class(es)), classifier {model.classifier.network} ({len(model.classes)} classes: "
          f"{', '.join(model.classes[:8])}{', ...' if len(model.classes) > 8 else ''})")
    return 0


def _add_invoke(sub) -> None:
    p = sub.add_parser("invoke", help="send images to a running endpoint; its answers drawn on them",
                       description="POSTs each image to URL/invocations (magiccards serve, docker run IMAGE serve, "
                                   "or any server of the SageMaker contract), or through SageMaker Runtime's "
                                   "InvokeEndpoint to endpoint:NAME; writes <name>.json and <name>.jpg.")
    p.add_argument("url", help="http://HOST:PORT of a server, or endpoint:NAME of a SageMaker endpoint")
    p.add_argument("images", nargs="+", type=Path, help="JPEG or PNG files")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--wait", type=float, default=0, help="seconds to wait for /ping first (a server starting)")
    p.add_argument("--score-threshold", type=float, default=0.3, help="detection: smallest score kept (default 0.3)")
    p.add_argument("--profile", default=None, help="endpoint:NAME: AWS profile (default: AWS_PROFILE or the default)")
    p.add_argument("--region", default=None, help="endpoint:NAME: AWS region (default: AWS_DEFAULT_REGION)")
    p.set_defaults(func=_run_invoke)


def _run_invoke(args) -> int:
    from .aws import region_of, session
    from .serve.client import invoke_files, transport, wait_until_ready

    def aws_session():
        made = session(args.profile, args.region)
        region_of(made)
        return made

    send = transport(args.url, aws_session)
    if args.wait and not args.url.startswith("endpoint:"):
        wait_until_ready(args.url, args.wait)
    invoke_files(send, args.images, args.out, score_threshold=args.score_threshold)
    return 0


def _run_synth(args) -> int:
    from .data.synth import synth
    classes = None if args.classes is None else int(args.classes) if args.classes.isdigit() else args.classes.split(",")
    result = synth(args.out, task=args.task, count=args.count, classes=classes, size=args.size,
                   backgrounds=args.backgrounds, max_cards=args.max_cards, seed=args.seed, workers=args.workers,
                   fans=args.fans, faces=args.faces, distractors=args.distractors)
    _list_skipped(result.skipped, "card image(s)")
    print(f"wrote {result.images} {args.task} image(s) of {len(result.classes)} class(es) to {args.out} "
          f"in {result.seconds:.1f} s ({result.images / max(result.seconds, 1e-9):.0f} img/s)")
    return 0


def _list_skipped(problems, what: str) -> None:
    """One line with the count, then one line per skipped item with its reason (stderr)."""
    if problems:
        print(f"skipped {len(problems)} {what}:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)


def _run_faces(args) -> int:
    from .data.cutout import cut_faces
    aspect = None
    if args.aspect:
        w, _, h = args.aspect.partition(":")
        try:
            aspect = float(w) / float(h) if h else float(w)
        except (ValueError, ZeroDivisionError):
            raise UserError(f"--aspect is WIDTH:HEIGHT of a card, e.g. 63:88; got {args.aspect!r}") from None
    names = args.names.split(",") if args.names else None
    result = cut_faces(args.photos, args.out, names=names, aspect=aspect, sheet=args.sheet)
    _list_skipped(result.skipped, "photo(s)")
    if not result.written:
        raise UserError(f"no card found in any of {len(result.skipped)} photo(s) of {args.photos}")
    print(f"cut {len(result.written)} face(s) into {args.out} in {result.seconds:.1f} s; check them: {result.sheet}")
    return 0


def _run_pack(args) -> int:
    from .data.pack import pack
    if args.pass_through and args.resize:
        print("note: --pass-through stores original bytes; --resize is ignored", file=sys.stderr)
        args.resize = None
    r = pack(args.input, args.out, fmt=args.format, images=args.images, classes=args.classes,
             val_fraction=args.val_fraction, seed=args.seed, resize=args.resize, quality=args.quality,
             pass_through=args.pass_through, workers=args.workers, one_class=args.one_class,
             crops=args.crops)
    unit = "images" if r.task == "classification" else "objects"
    for split, n in r.images.items():
        per_class = ", ".join(f"{k}={v}" for k, v in r.counts[split].items())
        print(f"{split}: {n} images ({unit} per class: {per_class})")
    total = sum(r.images.values())
    print(f"packed {total} image(s) in {r.seconds:.1f} s ({total / max(r.seconds, 1e-9):.0f} img/s) -> {r.out_dir}")
    if r.problems:
        print(f"{sum(r.problems.values())} problem(s); {r.skipped} image(s) skipped:", file=sys.stderr)
        for kind, n in sorted(r.problems.items()):
            print(f"  {kind}: {n}", file=sys.stderr)
        import json
        listed = json.loads((r.out_dir / "pack-report.json").read_text())["problems"]
        for p in listed[:SHOWN_PROBLEMS]:
            print(f"  - {p['kind']}: {p['item']}: {p['reason']}", file=sys.stderr)
        if len(listed) > SHOWN_PROBLEMS:
            print(f"  ... {len(listed) - SHOWN_PROBLEMS} more in {r.out_dir / 'pack-report.json'}", file=sys.stderr)
    return 0


def _run_inspect(args) -> int:
    import json

    from .data.inspect import format_stats, inspect_rec
    stats = inspect_rec(args.rec, classes=args.classes, sheet=args.sheet, samples=args.samples, charts=args.charts)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def _sigterm_exits() -> None:
    """SIGTERM ends the command as Ctrl-C does, through its clean-up (temporary folders, partial files)."""
    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="magiccards", description=__doc__)
    from . import __version__, cloud_cli
    parser.add_argument("--version", action="version", version=f"magiccards {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_faces, _add_synth, _add_pack, _add_inspect, _add_train, _add_combine, _add_predict, _add_serve, _add_invoke, _add_export,
                _add_deeplens, _add_greengrass, _add_image, _add_weights, _add_base_image, *cloud_cli.COMMANDS):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `magiccards` console script (`argv` None: the program itself, from sys.argv)."""
    try:
        return _run(argv)
    except KeyboardInterrupt:  # before the command began (its imports, its arguments): nothing to undo
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if argv is None and threading.current_thread() is threading.main_thread():
            # the command's work is done and said: a Ctrl-C while the interpreter tears down its native
            # libraries (a second or more after an export) has nothing left to stop, and would otherwise
            # kill the process silently with a signal, as if the finished work had been cut short
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_hyperparameters", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if getattr(args, "accepts_hyperparameters", False):
            args.hyperparameters = _hyperparameters(extra)
            _refuse_misspelt_options(args)
        return args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
