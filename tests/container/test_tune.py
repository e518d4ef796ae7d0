"""`tune` against moto_server: the CreateHyperParameterTuningJob request field by field, every range checked
against the algorithm's specs before any call. moto calls a tuning job Completed at once with a fake best job and
does not implement ListTrainingJobsForHyperParameterTuningJob (REFERENCE §10): `--wait` is followed against a
local server speaking SageMaker's JSON protocol, and the test says so."""
from __future__ import annotations

import re

from magiccards.train.reporting import METRIC_DEFINITIONS, epoch_lines

from tests.helpers import JsonServiceStandIn, run_cli

from .test_cloud import ROLE, _boto, account  # noqa: F401 - the account fixture


def test_the_objective_regexes_match_the_lines_the_training_logs():
    record = {"speed": 50.0, "seconds": 3.0, "train_accuracy": 0.5, "train_loss": 1.2, "validation_accuracy": 0.8125,
              "validation_top_k": 0.9, "train_cross_entropy": 1.0, "train_smooth_l1": 0.4, "validation_map": 0.4375}
    for task, metric, value in (("classification", "validation:accuracy", 0.8125), ("detection", "validation:mAP", 0.4375)):
        regex = next(d["Regex"] for d in METRIC_DEFINITIONS[task] if d["Name"] == metric)
        found = [float(m.group(1)) for line in epoch_lines(task, 3, record, "algo-1") for m in [re.search(regex, line)]
                 if m]
        assert found == [value], (task, found)


def test_a_tuning_job_is_sent_field_by_field(account):  # noqa: F811
    done = run_cli("tune", account, "--role", ROLE, "--objective", "validation:accuracy", "--name", "cards-tune-1",
                   "--range", "learning_rate=0.0001:0.1:log", "--range", "mini_batch_size=8:64",
                   "--range", "optimizer=sgd,adam", "--max-jobs", "12", "--parallel", "3",
                   "--epochs", "5", "--image_shape", "3,32,32")
    assert done.returncode == 0, done.stderr
    assert "tuning job: cards-tune-1" in done.stdout
    job = _boto("sagemaker").describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="cards-tune-1")
    config = job["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian" and config["TrainingJobEarlyStoppingType"] == "Auto"
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:accuracy"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 12, "MaxParallelTrainingJobs": 3}
    ranges = config["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"] == [{"Name": "learning_rate", "MinValue": "0.0001", "MaxValue": "0.1",
                                                    "ScalingType": "Logarithmic"}]
    assert ranges["IntegerParameterRanges"] == [{"Name": "mini_batch_size", "MinValue": "8", "MaxValue": "64",
                                                 "ScalingType": "Auto"}]
    assert ranges["CategoricalParameterRanges"] == [{"Name": "optimizer", "Values": ["sgd", "adam"]}]
    definition = job["TrainingJobDefinition"]
    assert definition["StaticHyperParameters"] == {"epochs": "5", "image_shape": "3,32,32"}
    assert definition["AlgorithmSpecification"]["TrainingImage"].endswith("/magiccards:cpu")
    assert definition["RoleArn"] == f"arn:aws:iam::123456789012:role/{ROLE}"
    assert {c["ChannelName"] for c in definition["InputDataConfig"]} == {"train", "validation", "classes"}
    # the request's metric regexes are train/reporting.py's (moto keeps them as sent here)
    sent = {d["Name"]: d["Regex"] for d in definition["AlgorithmSpecification"]["MetricDefinitions"]}
    assert sent["validation:accuracy"] == r"Epoch\[\d+\] Validation-accuracy=([0-9.]+)"

    warm = run_cli("tune", account, "--role", ROLE, "--objective", "validation:accuracy", "--name", "cards-tune-2",
                   "--range", "learning_rate=0.001:0.01", "--strategy", "hyperband", "--warm-start", "cards-tune-1")
    assert warm.returncode == 0, warm.stderr
    job = _boto("sagemaker").describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="cards-tune-2")
    assert job["HyperParameterTuningJobConfig"]["Strategy"] == "Hyperband"
    assert job["WarmStartConfig"] == {"ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "cards-tune-1"}],
                                      "WarmStartType": "IdenticalDataAndAlgorithm"}


def test_each_tuning_mistake_is_one_line_before_any_money_is_spent(account):  # noqa: F811
    base = ("tune", account, "--role", ROLE)
    cases = {
        "a metric the task does not log": (("--objective", "validation:mAP", "--range", "learning_rate=0.001:0.01"),
                                           "a classification job does not log it"),
        "a metric nobody logs": (("--objective", "validation:f1", "--range", "learning_rate=0.001:0.01"),
                                 "is not a metric the algorithm logs"),
        "an unknown hyperparameter": (("--objective", "validation:accuracy", "--range", "learning_rat=0.001:0.01"),
                                      "did you mean learning_rate"),
        "a value the spec refuses": (("--objective", "validation:accuracy", "--range", "optimizer=sgd,adagrad"),
                                     "optimizer='adagrad' is not allowed"),
        "a log scale over zero": (("--objective", "validation:accuracy", "--range", "momentum=0:0.9:log"),
                                  "a log scale needs values above 0"),
        "a reversed range": (("--objective", "validation:accuracy", "--range", "learning_rate=0.1:0.01"),
                             "LOW must be below HIGH"),
        "fixed and tuned": (("--objective", "validation:accuracy", "--range", "epochs=2:9", "--epochs", "4"),
                            "both fixed"),
        "more parallel jobs than jobs": (("--objective", "validation:accuracy", "--range", "learning_rate=0.001:0.01",
                                          "--max-jobs", "2", "--parallel", "4"), "--max-jobs 2 is below --parallel 4"),
        "nothing to tune": (("--objective", "validation:accuracy"), "nothing to tune"),
        "a warm start from nothing": (("--objective", "validation:accuracy", "--range", "learning_rate=0.001:0.01",
                                       "--warm-start", "cards-tune-none"), "no tuning job cards-tune-none"),
        "a name too long": (("--objective", "validation:accuracy", "--range", "learning_rate=0.001:0.01",
                             "--name", "a" * 33), "1 to 32 letters"),
    }
    for what, (args, message) in cases.items():
        done = run_cli(*base, *args)
        assert done.returncode == 1 and message in done.stderr, (what, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, (what, done.stderr)


def test_wait_prints_each_job_as_it_ends_then_the_best(account, monkeypatch):  # noqa: F811
    """SageMaker's side is a local server: moto does not list a tuning job's training jobs (REFERENCE §10)."""
    states = iter(["none yet", "InProgress", "InProgress", "Completed"])  # first: the name is free
    listed = iter([[], [_summary("cards-tune-3-001-a", 0.71, "0.003")],
                   [_summary("cards-tune-3-001-a", 0.71, "0.003"), _summary("cards-tune-3-002-b", 0.84, "0.01")]])
    best = _summary("cards-tune-3-002-b", 0.84, "0.01")

    def describe(body):
        status = next(states, "Completed")
        if status == "none yet":
            return 400, {"__type": "ResourceNotFound", "message": "Amazon SageMaker can't find a tuning job named "
                                                                  "cards-tune-3"}
        answer = {"HyperParameterTuningJobName": "cards-tune-3", "HyperParameterTuningJobArn": "arn:x",
                  "HyperParameterTuningJobStatus": status, "CreationTime": 0,
                  "HyperParameterTuningJobConfig": {"Strategy": "Bayesian", "ResourceLimits": {
                      "MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 1}},
                  "TrainingJobStatusCounters": {}, "ObjectiveStatusCounters": {}}
        if status == "Completed":
            answer["BestTrainingJob"] = best
        return answer

    stand_in = JsonServiceStandIn({
        "DescribeTrainingJob": (400, {"__type": "ValidationException", "message": "Requested resource not found."}),
        "DescribeHyperParameterTuningJob": (200, describe),
        "CreateHyperParameterTuningJob": (200, {"HyperParameterTuningJobArn": "arn:x"}),
        "ListTrainingJobsForHyperParameterTuningJob": (200, lambda body: {"TrainingJobSummaries": next(listed, [])}),
    })
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", stand_in.endpoint)
        done = run_cli("tune", account, "--role", ROLE, "--objective", "validation:accuracy", "--name", "cards-tune-3",
                       "--range", "learning_rate=0.001:0.01:log", "--max-jobs", "2", "--parallel", "1", "--wait",
                       "--poll", "0.05")
    finally:
        stand_in.close()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("cards-tune-3-001-a: Completed"))
    second = next(i for i, line in enumerate(lines) if line.startswith("cards-tune-3-002-b: Completed"))
    assert first < second and "validation:accuracy 0.7100 (learning_rate=0.003)" in lines[first]
    assert any(line.startswith("best: cards-tune-3-002-b") and "magiccards deploy cards-tune-3-002-b" in line
               for line in lines)


def _summary(name: str, value: float, rate: str) -> dict:
    return {"TrainingJobName": name, "TrainingJobArn": f"arn:{name}", "CreationTime": 0, "TrainingEndTime": value,
            "TrainingJobStatus": "Completed", "TunedHyperParameters": {"learning_rate": rate},
            "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "validation:accuracy", "Value": value}}
