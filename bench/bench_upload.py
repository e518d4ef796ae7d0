"""Benchmark: `magiccards upload`'s own multipart upload (resumable) vs boto3's transfer manager, side by side.

The upload is hand-written because boto3's `upload_file` cannot resume an interrupted multipart upload;
this measures what that costs. Both send the same file, in rounds that alternate (best of 3 each), to a
moto_server started on 127.0.0.1 (no AWS here; against real S3 the network decides, and the transfer
manager's 10 threads matter more). Each of our rounds starts with an empty digest cache (a first upload:
the file is hashed, then sent). Also measured: a second `upload` of the unchanged file (skipped by size and
SHA-256; the digest remembered from the first, as a user re-running it gets it, and computed afresh), the
resume of an upload cut off half way (started on this machine, and elsewhere), and how long moto_server's
CompleteMultipartUpload takes to assemble the file (it copies every byte again; real S3 assembles server-side),
which every upload of the file pays.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROUNDS = 3


def _moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Path(sys.executable).with_name("moto_server")
    command = [str(server)] if server.exists() else [shutil.which("moto_server") or "moto_server"]
    process = subprocess.Popen([*command, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            return process, endpoint
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("moto_server did not start (pip install 'moto[server]')")


class AssemblyClock:
    """Seconds spent in CompleteMultipartUpload calls of a boto3 session's clients (botocore's own events)."""

    def __init__(self, session):
        self.seconds, self._started = 0.0, None
        session.events.register("before-call.s3.CompleteMultipartUpload", self._before)
        session.events.register("after-call.s3.CompleteMultipartUpload", self._after)

    def _before(self, **_):
        self._started = time.perf_counter()

    def _after(self, **_):
        self.seconds += time.perf_counter() - self._started

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    args = parser.parse_args()
    process, endpoint = _moto()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=endpoint)
    import boto3
    from boto3.s3.transfer import TransferConfig
    from magiccards.container.digests import identity, remember_upload
    from magiccards.container.upload import PART_SIZE, _pending_upload, upload

    try:
        session = boto3.session.Session()
        clock = AssemblyClock(session)
        s3 = session.client("s3")
        s3.create_bucket(Bucket="bench-upload")
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "pack"
            data.mkdir()
            rec = data / "train.rec"
            with open(rec, "wb") as f:
                for _ in range(args.size_mb):
                    f.write(os.urandom(1 << 20))
            size = rec.stat().st_size
            config = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE)
            ours, theirs = [], []
            caches = Path(tmp) / "caches"
            for i in range(ROUNDS):
                os.environ["XDG_CACHE_HOME"] = str(caches / str(i))  # empty: the file is hashed as on a first upload
                clock.take()
                started = time.perf_counter()
                upload(data, f"s3://bench-upload/ours-{i}", session=session, progress=False, log=lambda line: None)
                ours.append((time.perf_counter() - started, clock.take()))
                started = time.perf_counter()
                s3.upload_file(str(rec), "bench-upload", f"theirs-{i}/train/train.rec", Config=config)
                theirs.append(time.perf_counter() - started)
            started = time.perf_counter()
            upload(data, "s3://bench-upload/ours-0", session=session, progress=False, log=lambda line: None)
            skip = time.perf_counter() - started
            os.environ["XDG_CACHE_HOME"] = str(caches / "cold")
            started = time.perf_counter()
            upload(data, "s3://bench-upload/ours-0", session=session, progress=False, log=lambda line: None)
            skip_cold = time.perf_counter() - started
            # an upload cut off half way, as a Ctrl-C leaves it, then resumed: started on this machine from the
            # file as it is (as `upload` records when it starts one: the stored parts are taken as they are), and
            # started elsewhere (each stored part read back and checked by its MD5)
            resumes: dict[str, list[tuple[float, float]]] = {"here": [], "elsewhere": []}
            half = -(-size // PART_SIZE) // 2
            for i in range(ROUNDS):  # best of ROUNDS, as the full uploads
                os.environ["XDG_CACHE_HOME"] = str(caches / f"cut-off-{i}")  # as the cut-off upload left it: no digest
                for case in resumes:
                    key = f"resume-{case}-{i}/train/train.rec"
                    upload_id = s3.create_multipart_upload(Bucket="bench-upload", Key=key)["UploadId"]
                    with open(rec, "rb") as f:
                        for n in range(1, half + 1):
                            s3.upload_part(Bucket="bench-upload", Key=key, UploadId=upload_id, PartNumber=n,
                                           Body=f.read(PART_SIZE))
                    assert _pending_upload(s3, "bench-upload", key)[0] == upload_id
                    if case == "here":
                        remember_upload(rec, identity(rec), upload_id)
                    clock.take()
                    started = time.perf_counter()
                    upload(data, f"s3://bench-upload/resume-{case}-{i}", session=session, progress=False,
                           log=lambda line: None)
                    resumes[case].append((time.perf_counter() - started, clock.take()))
    finally:
        process.terminate()
    mb = size / 1e6
    full, assembly = min(ours)
    print(f"{args.size_mb} MiB train.rec to moto_server on 127.0.0.1, {PART_SIZE >> 20} MiB parts, best of {ROUNDS}:")
    print(f"  magiccards upload (10 threads, resumable)     {full:6.2f} s  {mb / full:7.1f} MB/s")
    print(f"  boto3 upload_file (10 threads)                  {min(theirs):6.2f} s  {mb / min(theirs):7.1f} MB/s")
    print(f"  ratio ours / boto3: {full / min(theirs):.2f}x the time")
    print(f"  unchanged file again (skipped: size + SHA-256)  {skip:6.2f} s  ({skip / full:.2f}x a full upload; "
          f"{skip_cold:.2f} s = {skip_cold / full:.2f}x with the digest computed afresh)")
    for case, words in (("here", "started here, parts taken as stored"), ("elsewhere", "started elsewhere, parts "
                                                                                       "checked by MD5")):
        seconds, assembled = min(resumes[case])
        print(f"  resume after half the parts ({words}) {seconds:6.2f} s  ({seconds / full:.2f}x a full upload; "
              f"{(seconds - assembled) / (full - assembly):.2f}x without moto's assembly)")
    print(f"  moto_server's CompleteMultipartUpload, which copies the whole file again (real S3 assembles it "
          f"server-side): {assembly:.2f} s of the full upload, {min(resumes['here'])[1]:.2f} s of a resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
