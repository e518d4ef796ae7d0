"""Following SageMaker training jobs: status transitions, the CloudWatch log, metrics, listing and stopping.

SageMaker writes a job's log to the group /aws/sagemaker/TrainingJobs, one stream per host named
`JOB/algo-N-EPOCH`; `LogTail` reads every stream of a job from where it last stopped.
"""
from __future__ import annotations

import time

from magiccards.aws import SAGEMAKER_NAME, aws_error, calling
from magiccards.errors import TrainingFailed, UserError

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TERMINAL = ("Completed", "Failed", "Stopped")


JOB_NAME = SAGEMAKER_NAME


def check_job_name(name: str) -> None:
    """Refuse, before any call, a name no training job can have."""
    if not JOB_NAME.match(name or ""):
        raise UserError(f"{name!r} is not a training job name (1 to 63 letters, digits and hyphens, starting with a "
                        "letter or digit): `magiccards jobs` lists them")


def describe(sagemaker, name: str) -> dict:
    """DescribeTrainingJob; a job that does not exist, a bad name, an unreachable endpoint: one line each."""
    from botocore.exceptions import BotoCoreError

    check_job_name(name)
    try:
        return sagemaker.describe_training_job(TrainingJobName=name)
    except BotoCoreError as e:  # cannot reach the endpoint, no credentials...
        raise aws_error(f"describing training job {name}", e) from None
    except sagemaker.exceptions.ClientError as e:
        error = e.response.get("Error", {})
        text = error.get("Message", "").lower()
        if error.get("Code") in ("ValidationException", "ResourceNotFound") and ("not found" in text
                                                                                 or "could not find" in text):
            raise UserError(f"no training job named {name} in this account and region (`magiccards jobs` lists "
                            "them)") from None
        with calling(f"describing training job {name}"):
            raise


class LogTail:
    """New lines of a job's CloudWatch log streams, each stream read on from its last token."""

    def __init__(self, logs, job: str):
        self.logs, self.job, self.tokens = logs, job, {}

    def streams(self) -> list[str]:
        try:
            found = self.logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{self.job}/")
        except self.logs.exceptions.ResourceNotFoundException:
            return []  # no job of this account has logged yet
        return sorted(s["logStreamName"] for s in found.get("logStreams", []))

    def lines(self) -> list[str]:
        """Every line logged since the last call, prefixed by the host when the job has several."""
        out = []
        with calling(f"reading the log of {self.job}"):
            streams = self.streams()
            for stream in streams:
                host = stream.split("/", 1)[1].rsplit("-", 1)[0] if "/" in stream else stream
                while True:
                    args = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
                    if stream in self.tokens:
                        args["nextToken"] = self.tokens[stream]
                    page = self.logs.get_log_events(**args)
                    events = page.get("events", [])
                    out += [f"[{host}] {e['message']}" if len(streams) > 1 else e["message"] for e in events]
                    token = page.get("nextForwardToken")
                    if not events or token == self.tokens.get(stream):
                        self.tokens[stream] = token or self.tokens.get(stream)
                        break
                    self.tokens[stream] = token
        return out


def follow(session, name: str, poll: float = 15.0, out=print, logs: bool = True) -> dict:
    """Print the job's status transitions and log lines as they come, until it ends; returns its description."""
    sagemaker = session.client("sagemaker")
    tail = LogTail(session.client("logs"), name) if logs else None
    shown = 0
    while True:
        job = describe(sagemaker, name)
        transitions = job.get("SecondaryStatusTransitions", [])
        for t in transitions[shown:]:
            out(f"{t['Status']}: {t.get('StatusMessage', '')}".rstrip(": "))
        shown = max(shown, len(transitions))
        if tail:
            for line in tail.lines():
                out(line)
        if job["TrainingJobStatus"] in TERMINAL:
            return job
        time.sleep(poll)


def summary(job: dict) -> list[str]:
    """The lines that say how a job ended: status, metrics, time billed, the model's S3 URI."""
    lines = [f"{job['TrainingJobName']}: {job['TrainingJobStatus']}"]
    if job.get("FailureReason"):
        lines.append(f"failure reason: {job['FailureReason']}")
    for metric in job.get("FinalMetricDataList", []):
        lines.append(f"  {metric['MetricName']} = {metric['Value']:g}")
    if job.get("BillableTimeInSeconds") is not None:
        spot = job.get("TrainingTimeInSeconds"), job.get("BillableTimeInSeconds")
        lines.append(f"  training {spot[0]} s, billed {spot[1]} s")
    artifacts = job.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    if artifacts:
        lines.append(f"model artifact: {artifacts}")
    return lines


def wait(session, name: str, poll: float = 15.0, out=print, ask=input) -> dict:
    """`follow` the job; Ctrl-C asks whether to stop it or detach. A failed job raises TrainingFailed."""
    try:
        job = follow(session, name, poll, out)
    except KeyboardInterrupt:
        try:
            answer = ask(f"\n{name} is still running. Stop it (s) or detach and leave it running (d)? [d] ")
        except (EOFError, KeyboardInterrupt):
            answer = "d"
        if answer.strip().lower().startswith("s"):
            stop(session, name)
            out(f"stopping {name}; it ends at its next checkpoint (`magiccards jobs` shows when)")
        else:
            out(f"detached; {name} goes on. Follow it again with: magiccards logs {name} --follow")
        return describe(session.client("sagemaker"), name)
    for line in summary(job):
        out(line)
    if job["TrainingJobStatus"] == "Failed":
        raise TrainingFailed(f"training job {name} failed: {job.get('FailureReason', 'no reason given')}")
    return job


def stop(session, name: str) -> None:
    """StopTrainingJob (SIGTERM to the container; our job writes a checkpoint and exits)."""
    sagemaker = session.client("sagemaker")
    describe(sagemaker, name)
    with calling(f"stopping training job {name}"):
        sagemaker.stop_training_job(TrainingJobName=name)


def recent(session, limit: int = 10) -> list[dict]:
    """The account's latest training jobs (newest first), each described (status, metrics)."""
    sagemaker = session.client("sagemaker")
    with calling("listing training jobs"):
        listed = sagemaker.list_training_jobs(SortBy="CreationTime", SortOrder="Descending",
                                              MaxResults=limit)["TrainingJobSummaries"]
        return [sagemaker.describe_training_job(TrainingJobName=j["TrainingJobName"]) for j in listed]


def table(jobs: list[dict]) -> str:
    """The jobs as a table: name, status, created, instance, final metrics."""
    if not jobs:
        return "no training jobs in this account and region"
    rows = [("NAME", "STATUS", "CREATED", "INSTANCES", "METRICS")]
    for j in jobs:
        created = j.get("CreationTime")
        resource = j.get("ResourceConfig", {})
        rows.append((j["TrainingJobName"], j["TrainingJobStatus"],
                     created.strftime("%Y-%m-%d %H:%M") if hasattr(created, "strftime") else str(created or ""),
                     f"{resource.get('InstanceCount', '?')} x {resource.get('InstanceType', '?')}",
                     " ".join(f"{m['MetricName']}={m['Value']:g}" for m in j.get("FinalMetricDataList", []))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows).rstrip()
