"""`magiccards tune`: a SageMaker hyperparameter tuning job over the training request `launch` builds.

    tune(TunePlan(job=JobPlan(...), objective="validation:accuracy", ranges=[...]), session)
      1. each range checked against the algorithm's own hyperparameter specs (train/hyperparameters.py)
         before any AWS call: unknown names, ends outside the allowed values, a log scale over non-positive
         values, a name both fixed and tuned;
      2. the training job definition is `launch`'s request, checked the same way (channels, role, image);
         the objective must be a metric the task emits (its regex is train/reporting.py's, sent as the
         job's MetricDefinitions);
      3. CreateHyperParameterTuningJob (Bayesian by default, early stopping Auto; warm start from an earlier
         tuning job); `--wait` prints each training job as it ends, with its objective, then the best.
"""
from __future__ import annotations

import dataclasses
import re
import time

from magiccards.train.hyperparameters import SPECS, HyperparameterError, convert, known
from magiccards.train.reporting import METRIC_DEFINITIONS

from magiccards.aws import calling, validate_request
from magiccards.errors import AwsConfigError, UserError

from .launch import JobPlan, check_job

STRATEGIES = ("Bayesian", "Random", "Hyperband")
NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}$")  # HyperParameterTuningJobName: at most 32
TERMINAL = ("Completed", "Failed", "Stopped")
DEFINITION_FIELDS = ("RoleArn", "InputDataConfig", "OutputDataConfig", "ResourceConfig", "StoppingCondition",
                     "EnableManagedSpotTraining", "CheckpointConfig")


@dataclasses.dataclass(frozen=True)
class Range:
    """One tuned hyperparameter: LOW:HIGH[:log] (integer or continuous, by its spec) or A,B,C (categorical)."""

    name: str
    low: str | None = None
    high: str | None = None
    log: bool = False
    values: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Range":
        name, sep, rest = str(text).partition("=")
        if not sep or not name or not rest:
            raise UserError(f"--range {text!r}: expected NAME=LOW:HIGH[:log] or NAME=A,B,C")
        if ":" in rest:
            parts = rest.split(":")
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
                raise UserError(f"--range {text!r}: expected NAME=LOW:HIGH or NAME=LOW:HIGH:log")
            return cls(name, parts[0], parts[1], len(parts) == 3)
        if "," in rest:
            return cls(name, values=tuple(v.strip() for v in rest.split(",") if v.strip()))
        raise UserError(f"--range {text!r}: a range needs LOW:HIGH or several values A,B (a single value is a "
                        f"fixed hyperparameter: --{name} {rest})")


def check_ranges(ranges: list[Range], static: dict, task: str | None) -> None:
    """Every range against the hyperparameter specs (one line naming the problem)."""
    names = [r.name for r in ranges]
    try:
        known({name: "" for name in names})
    except HyperparameterError as e:
        raise UserError(f"--range: {e}") from None
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"--range given twice for {', '.join(repeated)}")
    both = sorted(set(names) & set(static))
    if both:
        raise UserError(f"{', '.join(both)} is both fixed (--{both[0]}) and tuned (--range): keep one")
    for r in ranges:
        spec = SPECS[r.name]
        try:
            if r.values:
                for value in r.values:
                    convert(r.name, value, task)
                continue
            if spec.kind not in ("int", "float"):
                raise UserError(f"--range {r.name}: a {spec.kind} hyperparameter takes values (NAME=A,B), not LOW:HIGH")
            low, high = convert(r.name, r.low, task), convert(r.name, r.high, task)
        except HyperparameterError as e:
            raise UserError(f"--range {r.name}: {e}") from None
        if low >= high:
            raise UserError(f"--range {r.name}={r.low}:{r.high}: LOW must be below HIGH")
        if r.log and low <= 0:
            raise UserError(f"--range {r.name}={r.low}:{r.high}:log: a log scale needs values above 0")


def parameter_ranges(ranges: list[Range]) -> dict:
    out = {"IntegerParameterRanges": [], "ContinuousParameterRanges": [], "CategoricalParameterRanges": []}
    for r in ranges:
        if r.values:
            out["CategoricalParameterRanges"].append({"Name": r.name, "Values": list(r.values)})
            continue
        kind = "IntegerParameterRanges" if SPECS[r.name].kind == "int" else "ContinuousParameterRanges"
        out[kind].append({"Name": r.name, "MinValue": r.low, "MaxValue": r.high,
                          "ScalingType": "Logarithmic" if r.log else "Auto"})
    return {k: v for k, v in out.items() if v}


@dataclasses.dataclass
class TunePlan:
    job: JobPlan
    objective: str
    ranges: list[Range]
    max_jobs: int = 10
    parallel: int = 2
    strategy: str = "Bayesian"
    name: str | None = None
    warm_start: str | None = None


def check_offline(plan: TunePlan) -> None:
    if plan.strategy not in STRATEGIES:
        raise UserError(f"--strategy {plan.strategy!r}: one of {', '.join(STRATEGIES)}")
    if not plan.ranges:
        raise UserError("nothing to tune: give at least one --range NAME=LOW:HIGH or NAME=A,B")
    if plan.parallel < 1 or plan.max_jobs < 1:
        raise UserError("--max-jobs and --parallel are at least 1")
    if plan.max_jobs < plan.parallel:
        raise UserError(f"--max-jobs {plan.max_jobs} is below --parallel {plan.parallel}: at most {plan.max_jobs} "
                        "jobs can run at once")
    if plan.name and not NAME.match(plan.name):
        raise UserError(f"--name {plan.name!r}: 1 to 32 letters, digits and hyphens (SageMaker's limit for tuning "
                        "jobs)")
    emitted = {d["Name"] for defs in METRIC_DEFINITIONS.values() for d in defs}
    if plan.objective not in emitted:
        raise UserError(f"--objective {plan.objective!r} is not a metric the algorithm logs: "
                        f"{', '.join(sorted(emitted))}")
    check_ranges(plan.ranges, plan.job.hyperparameters, plan.job.hyperparameters.get("task"))


def request(plan: TunePlan, training: dict, name: str) -> dict:
    """The CreateHyperParameterTuningJob request from `launch`'s validated CreateTrainingJob request."""
    algorithm = training["AlgorithmSpecification"]
    definition = {"StaticHyperParameters": training["HyperParameters"],
                  "AlgorithmSpecification": {"TrainingImage": algorithm["TrainingImage"],
                                             "TrainingInputMode": algorithm["TrainingInputMode"],
                                             "MetricDefinitions": algorithm["MetricDefinitions"]},
                  **{k: training[k] for k in DEFINITION_FIELDS if k in training}}
    config = {"Strategy": plan.strategy,
              "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": plan.objective},
              "ResourceLimits": {"MaxNumberOfTrainingJobs": plan.max_jobs, "MaxParallelTrainingJobs": plan.parallel},
              "ParameterRanges": parameter_ranges(plan.ranges),
              # Hyperband stops jobs early by its own rule
              "TrainingJobEarlyStoppingType": "Off" if plan.strategy == "Hyperband" else "Auto"}
    made = {"HyperParameterTuningJobName": name, "HyperParameterTuningJobConfig": config,
            "TrainingJobDefinition": definition, "Tags": training.get("Tags", [])}
    if plan.warm_start:
        made["WarmStartConfig"] = {"ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": plan.warm_start}],
                                   "WarmStartType": "IdenticalDataAndAlgorithm"}
    return made


def tune(plan: TunePlan, session, wait: bool = False, poll: float = 60.0, log=print) -> dict:
    """Check and create the tuning job; returns {'name', 'status', 'best'}."""
    check_offline(plan)
    training = check_job(plan.job, session, log)  # channels, role, image, the static hyperparameters
    task = plan.job.task
    emits = [d["Name"] for d in METRIC_DEFINITIONS.get(task, [])]
    if task and plan.objective not in emits:
        raise UserError(f"--objective {plan.objective}: a {task} job does not log it; it logs "
                        f"{', '.join(emits)}")
    check_ranges(plan.ranges, plan.job.hyperparameters, task)
    name = plan.name or f"mc-tune-{time.strftime('%y%m%d-%H%M%S', time.gmtime())}"
    made = request(plan, training, name)
    validate_request("sagemaker", "CreateHyperParameterTuningJob", made)
    sagemaker = session.client("sagemaker")
    if plan.warm_start:
        with calling(f"looking up tuning job {plan.warm_start} (--warm-start)"):
            _existing(sagemaker, plan.warm_start, must=True)
    with calling(f"looking up tuning job {name}"):
        if _existing(sagemaker, name):
            raise UserError(f"a tuning job named {name} exists already (pass another --name)")
    with calling(f"creating tuning job {name}"):
        sagemaker.create_hyper_parameter_tuning_job(**made)
    log(f"tuning job {name}: {plan.max_jobs} training jobs, {plan.parallel} at a time, {plan.strategy}, maximising "
        f"{plan.objective} over {', '.join(r.name for r in plan.ranges)}")
    if not wait:
        return {"name": name, "status": None, "best": None}
    return follow(sagemaker, name, poll, log)


def _existing(sagemaker, name: str, must: bool = False) -> dict | None:
    try:
        return sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    except sagemaker.exceptions.ClientError as e:
        error = e.response.get("Error", {})
        if error.get("Code") in ("ResourceNotFound", "ValidationException") and not must:
            return None
        if error.get("Code") in ("ResourceNotFound", "ValidationException"):
            raise UserError(f"there is no tuning job {name} to warm-start from") from None
        raise


def follow(sagemaker, name: str, poll: float = 60.0, log=print) -> dict:
    """Print each training job of the tuning job as it ends (with its objective), then the best one."""
    seen = set()
    while True:
        with calling(f"describing tuning job {name}"):
            job = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        with calling(f"listing the training jobs of {name}"):
            summaries = []
            for page in sagemaker.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
                    HyperParameterTuningJobName=name):
                summaries += page.get("TrainingJobSummaries", [])
        for summary in sorted(summaries, key=lambda s: str(s.get("TrainingEndTime", ""))):
            status = summary.get("TrainingJobStatus")
            if status in TERMINAL and summary["TrainingJobName"] not in seen:
                seen.add(summary["TrainingJobName"])
                metric = summary.get("FinalHyperParameterTuningJobObjectiveMetric", {})
                tuned = ", ".join(f"{k}={v}" for k, v in sorted(summary.get("TunedHyperParameters", {}).items()))
                score = f"{metric['MetricName']} {metric['Value']:.4f}" if "Value" in metric else "no objective"
                log(f"{summary['TrainingJobName']}: {status}, {score} ({tuned})")
        status = job["HyperParameterTuningJobStatus"]
        if status in TERMINAL:
            best = job.get("BestTrainingJob")
            if status == "Failed":
                raise AwsConfigError(f"tuning job {name} failed: {job.get('FailureReason', 'no reason given')}")
            if best:
                metric = best.get("FinalHyperParameterTuningJobObjectiveMetric", {})
                log(f"best: {best['TrainingJobName']} ({metric.get('MetricName')} {metric.get('Value')}); deploy it "
                    f"with: magiccards deploy {best['TrainingJobName']} --endpoint NAME --role ROLE")
            return {"name": name, "status": status, "best": best and best["TrainingJobName"]}
        time.sleep(poll)
