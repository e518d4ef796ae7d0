"""The cloud commands of the CLI: publish, upload, launch, jobs, logs, stop, deploy, endpoints, undeploy,
transform, transform-results, tune (container/ does the work)."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .errors import UserError


def _add_aws(p) -> None:
    p.add_argument("--profile", default=None, help="AWS profile (default: AWS_PROFILE or the default profile)")
    p.add_argument("--region", default=None, help="AWS region (default: AWS_DEFAULT_REGION or the profile's)")


def _session(args):
    from .aws import session

    return session(args.profile, args.region)


def _seconds(text: str) -> int:
    """90, 90s, 45m, 2h or 1d as seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", str(text))
    if not m:
        raise UserError(f"{text!r} is not a duration such as 3600, 90m or 2h")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _add_publish(sub) -> None:
    p = sub.add_parser("publish", help="push the training image to Amazon ECR (or any registry); prints its URI",
                       description="Build the image if missing, create the ECR repository if missing (scan on push), "
                                   "log in with ECR's token, push with a bar per layer and verify the digest.")
    p.add_argument("--tag", default="magiccards:cpu", help="local image to push (default magiccards:cpu)")
    p.add_argument("--repository", default=None, help="repository name (default: the local name, e.g. magiccards)")
    p.add_argument("--remote-tag", default=None, help="tag in the repository (default: the local tag)")
    p.add_argument("--registry", default=None, help="HOST:PORT of any registry to push to instead of ECR")
    p.add_argument("--immutable", action="store_true", help="create the ECR repository with immutable tags")
    p.add_argument("--no-progress", action="store_true")
    _add_aws(p)
    p.set_defaults(func=_run_publish)


def _run_publish(args) -> int:
    from .container.publish import publish

    session = None if args.registry else _session(args)
    published = publish(args.tag, repository=args.repository, registry=args.registry, tag=args.remote_tag,
                        immutable=args.immutable, session=session, progress=not args.no_progress)
    print(f"image URI: {published.uri}")
    print(f"pinned:    {published.pinned}")
    return 0


def _add_upload(sub) -> None:
    p = sub.add_parser("upload", help="upload a pack folder to S3 as training channels; prints the channel URIs",
                       description="Multipart uploads with a progress bar; files already there unchanged (size and "
                                   "SHA-256) are skipped; an interrupted upload resumes where it stopped.")
    p.add_argument("data", type=Path, help="the output folder of `magiccards pack`")
    p.add_argument("destination", help="s3://bucket/prefix")
    p.add_argument("--no-progress", action="store_true")
    _add_aws(p)
    p.set_defaults(func=_run_upload)


def _run_upload(args) -> int:
    from .container.upload import upload

    channels = upload(args.data, args.destination, session=_session(args), progress=not args.no_progress)
    for name, uri in channels.items():
        print(f"channel {name}: {uri}")
    print(f"launch with: magiccards launch --data {args.destination.rstrip('/')} --role ROLE")
    return 0


def _add_launch(sub) -> None:
    p = sub.add_parser("launch", help="start a SageMaker training job of the image on uploaded data",
                       description="Every other --key value is a hyperparameter (e.g. --epochs 10). The request is "
                                   "checked offline and against the account before it is sent.")
    p.add_argument("--data", default=None, help="s3://bucket/prefix given to `magiccards upload` (train, validation, "
                                                "classes channels)")
    p.add_argument("--channel", action="append", default=[], metavar="NAME=S3URI[,mode=Pipe,...]",
                   help="a channel of your own; options content_type=, mode=File|Pipe, "
                        "distribution=FullyReplicated|ShardedByS3Key (repeatable)")
    p.add_argument("--pretrained", default=None, help="s3:// URI of pretrained weights or an earlier model")
    p.add_argument("--model", default=None, help="s3:// URI of an earlier model.tar.gz to continue from")
    p.add_argument("--role", required=True, help="SageMaker execution role: name or ARN")
    p.add_argument("--image", default=None, help="image URI (default: magiccards:cpu in this account's ECR)")
    p.add_argument("--name", default=None, help="job name (default deeplens-magiccards-TASK-TIME)")
    p.add_argument("--input-mode", choices=("File", "Pipe"), default="File")
    p.add_argument("--distribution", choices=("FullyReplicated", "ShardedByS3Key"), default="FullyReplicated",
                   help="how --data channels are split over instances")
    p.add_argument("--instance-type", default="ml.m5.xlarge")
    p.add_argument("--instance-count", type=int, default=1)
    p.add_argument("--volume-size", type=int, default=30, help="GB of EBS per instance")
    p.add_argument("--max-runtime", default="24h", help="stop the job after this long (e.g. 3600, 90m, 2h)")
    p.add_argument("--spot", action="store_true", help="managed spot training (needs --checkpoint-s3)")
    p.add_argument("--max-wait", default=None, help="spot: how long to wait for capacity and run (>= --max-runtime)")
    p.add_argument("--checkpoint-s3", default=None, help="s3:// URI SageMaker syncs /opt/ml/checkpoints with")
    p.add_argument("--output", default=None, help="s3:// URI for model.tar.gz (default: s3://DATA_BUCKET/output)")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="job tag (repeatable)")
    p.add_argument("--wait", action="store_true", help="follow the job's status and log until it ends")
    p.add_argument("--poll", type=float, default=15.0, help=argparse.SUPPRESS)
    _add_aws(p)
    p.set_defaults(func=_run_launch, accepts_hyperparameters=True, own_parser=p)


def _plan(args):
    from .aws import S3Uri
    from .container.launch import Channel, JobPlan, channels_of_upload

    channels = channels_of_upload(args.data, args.distribution) if args.data else []
    for text in args.channel:
        own = Channel.parse(text, args.distribution)
        channels = [c for c in channels if c.name != own.name] + [own]
    for name, uri in (("pretrained", args.pretrained), ("model", args.model)):
        if uri:
            channels.append(Channel(name, uri, content_type="application/octet-stream", mode="File"))
    tags = {}
    for text in args.tag:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise UserError(f"--tag {text!r}: expected KEY=VALUE")
        tags[key] = value
    first = channels[0].uri if channels else None
    output = args.output or (f"s3://{S3Uri.parse(first, 'channel').bucket}/output" if first else "")
    return JobPlan(channels=channels, role=args.role, hyperparameters=args.hyperparameters, output=output,
                   image=args.image, name=args.name, task=args.hyperparameters.get("task"),
                   input_mode=args.input_mode, instance_type=args.instance_type, instance_count=args.instance_count,
                   volume_gb=args.volume_size, max_runtime=_seconds(args.max_runtime), spot=args.spot,
                   max_wait=_seconds(args.max_wait) if args.max_wait else None, checkpoint_uri=args.checkpoint_s3,
                   tags=tags)


def _run_launch(args) -> int:
    from .container import jobs
    from .container.launch import launch

    plan = _plan(args)
    session = _session(args)
    created = launch(plan, session)
    print(f"training job: {created['name']}")
    print(f"arn: {created['arn']}")
    if not args.wait:
        print(f"follow it with: magiccards logs {created['name']} --follow")
        return 0
    job = jobs.wait(session, created["name"], poll=args.poll)
    return 0 if job["TrainingJobStatus"] in ("Completed", "InProgress", "Stopping") else 1


def _add_jobs(sub) -> None:
    p = sub.add_parser("jobs", help="recent SageMaker training jobs with their status and final metrics")
    p.add_argument("--limit", type=int, default=10)
    _add_aws(p)
    p.set_defaults(func=_run_jobs)


def _run_jobs(args) -> int:
    from .container import jobs

    if args.limit < 1 or args.limit > 100:
        raise UserError("--limit is 1 to 100")
    print(jobs.table(jobs.recent(_session(args), args.limit)))
    return 0


def _add_logs(sub) -> None:
    p = sub.add_parser("logs", help="a training job's CloudWatch log (all hosts)")
    p.add_argument("job")
    p.add_argument("--follow", action="store_true", help="keep reading until the job ends, then print its summary")
    p.add_argument("--poll", type=float, default=15.0, help=argparse.SUPPRESS)
    _add_aws(p)
    p.set_defaults(func=_run_logs)


def _run_logs(args) -> int:
    from .container import jobs

    session = _session(args)
    if args.follow:
        job = jobs.wait(session, args.job, poll=args.poll)
        return 0 if job["TrainingJobStatus"] != "Failed" else 1
    jobs.describe(session.client("sagemaker"), args.job)
    lines = jobs.LogTail(session.client("logs"), args.job).lines()
    for line in lines:
        print(line)
    if not lines:
        print(f"{args.job} has logged nothing yet", file=sys.stderr)
    return 0


def _add_stop(sub) -> None:
    p = sub.add_parser("stop", help="stop a training job (it writes a checkpoint and ends)")
    p.add_argument("job")
    _add_aws(p)
    p.set_defaults(func=_run_stop)


def _run_stop(args) -> int:
    from .container import jobs

    jobs.stop(_session(args), args.job)
    print(f"stopping {args.job}")
    return 0


def _add_deploy(sub) -> None:
    p = sub.add_parser("deploy", help="serve a trained model from a SageMaker real-time endpoint",
                       description="MODEL is a training job name, an s3:// URI of a model.tar.gz, or a local model "
                                   "directory (packed and uploaded to --upload-to). Creates the model, the endpoint "
                                   "config and the endpoint, every request checked before the first call.")
    p.add_argument("model", help="training job name, s3://.../model.tar.gz, or a model directory")
    p.add_argument("--endpoint", required=True, help="endpoint name")
    p.add_argument("--role", required=True, help="SageMaker execution role: name or ARN")
    p.add_argument("--image", default=None, help="image URI (default: the training job's, else magiccards:cpu in "
                                                 "this account's ECR)")
    p.add_argument("--instance-type", default="ml.m5.large")
    p.add_argument("--instance-count", type=int, default=1)
    p.add_argument("--serverless", default=None, metavar="MEMORY_MB:MAX_CONCURRENCY",
                   help="a serverless endpoint instead of instances (memory 1024-6144 in 1 GB steps)")
    p.add_argument("--data-capture", nargs=2, default=None, metavar=("S3_URI", "PERCENT"),
                   help="capture requests and answers to S3 (a share of them)")
    p.add_argument("--upload-to", default=None, help="s3://bucket/prefix for a local model directory's model.tar.gz")
    p.add_argument("--update", action="store_true", help="move an existing endpoint of that name to this model")
    p.add_argument("--autoscale", default=None, metavar="MIN:MAX",
                   help="scale the instances on invocations per instance (waits for InService first)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="a server setting for the container (e.g. MAGICCARDS_BACKEND=openvino:int8; repeatable)")
    p.add_argument("--wait", action="store_true", help="follow the endpoint until it is InService")
    p.add_argument("--poll", type=float, default=30.0, help=argparse.SUPPRESS)
    _add_aws(p)
    p.set_defaults(func=_run_deploy)


def _run_deploy(args) -> int:
    from .container.endpoints import DeployPlan, deploy, parse_autoscale, parse_serverless

    environment = {}
    for text in args.env:
        key, sep, value = text.partition("=")
        if not sep or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]{0,1023}", key):
            raise UserError(f"--env {text!r}: expected KEY=VALUE with a variable name as KEY")
        environment[key] = value
    capture = None
    if args.data_capture:
        try:
            capture = (args.data_capture[0], int(args.data_capture[1]))
        except ValueError:
            raise UserError(f"--data-capture percent {args.data_capture[1]!r} is not a whole number") from None
    plan = DeployPlan(model=args.model, endpoint=args.endpoint, role=args.role, image=args.image,
                      instance_type=args.instance_type, instance_count=args.instance_count,
                      serverless=parse_serverless(args.serverless) if args.serverless else None,
                      data_capture=capture, upload_to=args.upload_to, update=args.update,
                      autoscale=parse_autoscale(args.autoscale) if args.autoscale else None, environment=environment)
    made = deploy(plan, _session(args), wait=args.wait, poll=args.poll)
    print(f"endpoint: {made['endpoint']}")
    print(f"model: {made['model']} ({made['model_data']})")
    print(f"endpoint config: {made['config']}")
    if made["status"] is None:
        print(f"follow it with: magiccards endpoints; send photos with: magiccards invoke endpoint:{made['endpoint']} "
              "PHOTO...")
    return 0 if made["status"] in (None, "InService") else 1


def _add_endpoints(sub) -> None:
    p = sub.add_parser("endpoints", help="SageMaker endpoints with their status and capacity")
    _add_aws(p)
    p.set_defaults(func=_run_endpoints)


def _run_endpoints(args) -> int:
    from .container import endpoints

    print(endpoints.table(endpoints.listed(_session(args))))
    return 0


def _add_undeploy(sub) -> None:
    p = sub.add_parser("undeploy", help="delete an endpoint, its endpoint config and its model",
                       description="A model that another endpoint config uses is kept (and named).")
    p.add_argument("endpoint")
    p.add_argument("--yes", action="store_true", help="do not ask first")
    _add_aws(p)
    p.set_defaults(func=_run_undeploy)


def _run_undeploy(args) -> int:
    from .container import endpoints

    session = _session(args)
    plan = endpoints.undeploy_plan(session, args.endpoint)
    what = ", ".join([f"endpoint {plan['endpoint']}", f"endpoint config {plan['config']}",
                      *(f"model {m}" for m in plan["models"])])
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError(f"undeploy would delete {what}: pass --yes to confirm (no terminal to ask on)")
        if input(f"delete {what}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    endpoints.undeploy(session, plan)
    return 0


def _add_transform(sub) -> None:
    p = sub.add_parser("transform", help="a SageMaker batch transform job over a prefix of photos or .rec files",
                       description="MODEL is a training job name, an s3:// URI of a model.tar.gz, or a local model "
                                   "directory (uploaded to --upload-to). Photos are sent whole; .rec files are cut at "
                                   "record boundaries. `transform-results JOB --out DIR` draws the answers.")
    p.add_argument("model", help="training job name, s3://.../model.tar.gz, or a model directory")
    p.add_argument("input", help="s3://bucket/prefix/ holding only JPEG/PNG photos or only .rec files")
    p.add_argument("output", help="s3://bucket/prefix/ for the answers (<input>.out)")
    p.add_argument("--role", required=True, help="SageMaker execution role: name or ARN")
    p.add_argument("--image", default=None)
    p.add_argument("--name", default=None, help="job name (default magiccards-transform-TIME)")
    p.add_argument("--instance-type", default="ml.m5.large")
    p.add_argument("--instance-count", type=int, default=1)
    p.add_argument("--upload-to", default=None, help="s3://bucket/prefix for a local model directory's model.tar.gz")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="requests per instance at once (default: the container's /execution-parameters answer)")
    p.add_argument("--max-payload-mb", type=int, default=None,
                   help="largest request in MB (default: the container's /execution-parameters answer)")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    p.add_argument("--poll", type=float, default=30.0, help=argparse.SUPPRESS)
    _add_aws(p)
    p.set_defaults(func=_run_transform)


def _run_transform(args) -> int:
    from .container.transform import TransformPlan, transform

    plan = TransformPlan(model=args.model, input=args.input, output=args.output, role=args.role, image=args.image,
                         name=args.name, instance_type=args.instance_type, instance_count=args.instance_count,
                         upload_to=args.upload_to, max_concurrent=args.max_concurrent,
                         max_payload_mb=args.max_payload_mb)
    made = transform(plan, _session(args), wait=args.wait, poll=args.poll)
    print(f"transform job: {made['name']}")
    if made["status"] is None:
        print(f"when it is Completed: magiccards transform-results {made['name']} --out DIR")
    return 0 if made["status"] in (None, "Completed") else 1


def _add_transform_results(sub) -> None:
    p = sub.add_parser("transform-results", help="a finished transform job's answers, drawn on its inputs",
                       description="Writes <input>.json and <input>.jpg for each photo (each record of a .rec: "
                                   "<rec>-NNNNN.json/.jpg), as `predict` does.")
    p.add_argument("job", help="the transform job's name, or the s3:// output it wrote to")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true")
    _add_aws(p)
    p.set_defaults(func=_run_transform_results)


def _run_transform_results(args) -> int:
    from .container.transform import results

    return 0 if results(_session(args), args.job, args.out, progress=not args.no_progress) else 1


def _add_tune(sub) -> None:
    p = sub.add_parser("tune", help="a SageMaker hyperparameter tuning job over the job `launch` would start",
                       description="Every other --key value is a fixed hyperparameter, as for launch; each --range is "
                                   "tuned. The request is checked offline and against the account before it is sent.")
    p.add_argument("data", help="s3://bucket/prefix given to `magiccards upload`")
    p.add_argument("--role", required=True, help="SageMaker execution role: name or ARN")
    p.add_argument("--objective", required=True, help="validation:accuracy (classification) or validation:mAP "
                                                      "(detection), maximised")
    p.add_argument("--range", action="append", default=[], metavar="NAME=LOW:HIGH[:log] | NAME=A,B",
                   help="a tuned hyperparameter (repeatable)")
    p.add_argument("--max-jobs", type=int, default=10)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--strategy", choices=("Bayesian", "Random", "Hyperband"), default="Bayesian",
                   type=lambda text: text[:1].upper() + text[1:].lower())
    p.add_argument("--warm-start", default=None, metavar="TUNING_JOB", help="start from an earlier tuning job's results")
    p.add_argument("--name", default=None, help="tuning job name, at most 32 characters (default mc-tune-TIME)")
    p.add_argument("--image", default=None)
    p.add_argument("--input-mode", choices=("File", "Pipe"), default="File")
    p.add_argument("--instance-type", default="ml.m5.xlarge")
    p.add_argument("--max-runtime", default="24h", help="per training job")
    p.add_argument("--output", default=None)
    p.add_argument("--wait", action="store_true", help="print each training job as it ends, then the best")
    p.add_argument("--poll", type=float, default=60.0, help=argparse.SUPPRESS)
    _add_aws(p)
    p.set_defaults(func=_run_tune, accepts_hyperparameters=True, own_parser=p)


def _run_tune(args) -> int:
    from .aws import S3Uri
    from .container.launch import JobPlan, channels_of_upload
    from .container.tune import Range, TunePlan, tune

    channels = channels_of_upload(args.data)
    output = args.output or f"s3://{S3Uri.parse(channels[0].uri, 'data').bucket}/output"
    job = JobPlan(channels=channels, role=args.role, hyperparameters=args.hyperparameters, output=output,
                  image=args.image, task=args.hyperparameters.get("task"), input_mode=args.input_mode,
                  instance_type=args.instance_type, max_runtime=_seconds(args.max_runtime))
    plan = TunePlan(job=job, objective=args.objective, ranges=[Range.parse(r) for r in args.range],
                    max_jobs=args.max_jobs, parallel=args.parallel, strategy=args.strategy, name=args.name,
                    warm_start=args.warm_start)
    made = tune(plan, _session(args), wait=args.wait, poll=args.poll)
    print(f"tuning job: {made['name']}")
    return 0 if made["status"] in (None, "Completed") else 1


COMMANDS = (_add_publish, _add_upload, _add_launch, _add_jobs, _add_logs, _add_stop, _add_deploy, _add_endpoints,
            _add_undeploy, _add_transform, _add_transform_results, _add_tune)
