"""`magiccards upload PACK_DIR s3://bucket/prefix`: a `pack` folder into S3, laid out as a job's channels.

    PREFIX/train/train.rec              channel `train` (File or Pipe mode: the prefix holds RecordIO only)
    PREFIX/validation/validation.rec    channel `validation`
    PREFIX/classes/classes.txt          channel `classes` (File mode; the job reads the class names there)
    PREFIX/classes/crop-rule.json       beside it, from `pack --crops` (the model card records the crop rule)
    PREFIX/pack/                        the .lst, .idx and pack-report.json, kept beside (not a channel)

Files go up in parts (multipart above one part's size, 10 parts at a time over as many pooled connections,
as boto3's transfer manager sends them) behind one progress bar, the file read once: its SHA-256 is computed
from the parts as they are sent and kept with the object (metadata for a one-part file, the `sha256` tag of a
multipart one, whose metadata is fixed before the first part). A file already there with the same size and
SHA-256 is skipped; the local SHA-256 is remembered while the file is untouched (container/digests.py), so an
unchanged folder is checked without reading it. An upload cut short (Ctrl-C, a lost connection) leaves its
parts in S3; the next run reads the file once, checking each stored part's MD5 as it passes and sending the
parts that are missing (a file changed since: that upload is aborted and the file sent whole). The check is skipped
when this machine started that upload from the file as it is now (its identity remembered with the upload's id,
container/digests.py): the stored parts are then the file's, and only the SHA-256 is read off them.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
from pathlib import Path

from magiccards.container.digests import (file_sha256, identity, remember, remember_upload, sent_unchanged,
                                          sha256_of)
from magiccards.aws import S3Uri, bucket_region, calling, region_of
from magiccards.data.crops import CROP_RULE_FILE
from magiccards.errors import DataError

PART_SIZE = 16 * 1024 * 1024  # S3 allows 5 MiB to 5 GiB per part, 10,000 parts
SHA_KEY = "sha256"  # x-amz-meta-sha256
THREADS = 10  # parts in flight and pooled connections, as boto3's transfer manager has them


@dataclasses.dataclass(frozen=True)
class Planned:
    local: Path
    key: str
    channel: str | None


def plan(data_dir: Path, prefix: S3Uri) -> list[Planned]:
    """Where each file of a pack folder goes; a folder without train.rec is refused."""
    data_dir = Path(data_dir)
    if not (data_dir / "train.rec").is_file():
        raise DataError(f"{data_dir} holds no train.rec: upload takes a `magiccards pack` output folder")
    files = []
    for split in ("train", "validation"):
        if (data_dir / f"{split}.rec").is_file():
            files.append(Planned(data_dir / f"{split}.rec", prefix.join(split, f"{split}.rec").key, split))
        for suffix in (".idx", ".lst"):
            if (data_dir / f"{split}{suffix}").is_file():
                files.append(Planned(data_dir / f"{split}{suffix}", prefix.join("pack", f"{split}{suffix}").key, None))
    if (data_dir / "classes.txt").is_file():
        files.append(Planned(data_dir / "classes.txt", prefix.join("classes", "classes.txt").key, "classes"))
    if (data_dir / CROP_RULE_FILE).is_file():  # `pack --crops`: the job records the rule in the model card
        files.append(Planned(data_dir / CROP_RULE_FILE, prefix.join("classes", CROP_RULE_FILE).key, "classes"))
    if (data_dir / "pack-report.json").is_file():
        files.append(Planned(data_dir / "pack-report.json", prefix.join("pack", "pack-report.json").key, None))
    return files


def _head(s3, bucket: str, key: str) -> dict | None:
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _stored_sha(s3, bucket: str, key: str, head: dict) -> str | None:
    """The SHA-256 kept with an object: its metadata, else its `sha256` tag (None when it cannot be read)."""
    sha = head.get("Metadata", {}).get(SHA_KEY)
    if sha:
        return sha
    try:
        tags = s3.get_object_tagging(Bucket=bucket, Key=key).get("TagSet", [])
    except s3.exceptions.ClientError:  # no s3:GetObjectTagging: the file is sent again, never skipped wrongly
        return None
    return next((t["Value"] for t in tags if t.get("Key") == SHA_KEY), None)


def _unchanged(s3, bucket: str, key: str, path: Path) -> bool:
    """Whether the object at `key` holds the file already (same size and SHA-256); the file is hashed only
    when an object of its size is there (and not at all when its digest is remembered)."""
    head = _head(s3, bucket, key)
    if head is None or head["ContentLength"] != path.stat().st_size:
        return False
    stored = _stored_sha(s3, bucket, key, head)
    return stored is not None and stored == sha256_of(path)


def _tag(s3, bucket: str, key: str, sha: str, log) -> None:
    try:
        s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": SHA_KEY, "Value": sha}]})
    except s3.exceptions.ClientError as e:
        log(f"note: s3://{bucket}/{key} could not be tagged with its SHA-256 ({e.response.get('Error', {}).get('Code')}"
            "): a later upload of the same file sends it again instead of skipping it")


def _pending_upload(s3, bucket: str, key: str) -> tuple[str | None, dict[int, dict]]:
    """The newest unfinished multipart upload of `key`: (id, {part number: its listing (ETag, Size)})."""
    uploads = [u for u in s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", []) if u["Key"] == key]
    if not uploads:
        return None, {}
    newest = max(uploads, key=lambda u: u["Initiated"])
    parts, marker = {}, 0
    while True:  # list_parts pages at 1,000 parts
        page = s3.list_parts(Bucket=bucket, Key=key, UploadId=newest["UploadId"], PartNumberMarker=marker)
        parts.update({part["PartNumber"]: part for part in page.get("Parts", [])})
        if not page.get("IsTruncated"):
            return newest["UploadId"], parts
        marker = page["NextPartNumberMarker"]


class _Changed(Exception):
    """A part stored by an earlier, unfinished upload differs from the file: the file changed since."""


def _same_part(chunk: bytes, listed: dict) -> bool:
    return len(chunk) == listed["Size"] and f'"{hashlib.md5(chunk).hexdigest()}"' == listed["ETag"]


def _send(s3, bucket: str, key: str, path: Path, part_size: int, bar, log) -> None:
    """Send the file (resuming an unfinished upload of it), its SHA-256 computed on the way and kept with it."""
    before = identity(path)
    if before[2] <= part_size:
        body = path.read_bytes()
        sha = hashlib.sha256(body).hexdigest()
        s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={SHA_KEY: sha})
        bar.update(len(body))
    else:
        upload_id, listed = _pending_upload(s3, bucket, key)
        sha = None
        if upload_id:
            trusted = sent_unchanged(path, upload_id)
            log(f"resuming the upload of {path.name}: {len(listed)} part(s) already in S3"
                + ("" if trusted else " (each checked against the file: the upload was not started here from it as "
                                      "it is now)"))
            try:
                sha = _send_parts(s3, bucket, key, path, upload_id, listed, part_size, bar, trusted)
            except _Changed:
                log(f"{path.name} changed since its upload was cut short: that upload is dropped and the file sent "
                    "whole")
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        if sha is None:
            upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
            remember_upload(path, before, upload_id)
            sha = _send_parts(s3, bucket, key, path, upload_id, {}, part_size, bar)
        _tag(s3, bucket, key, sha, log)
    remember(path, before, sha)


def _send_parts(s3, bucket: str, key: str, path: Path, upload_id: str, listed: dict[int, dict], part_size: int,
                bar, trusted: bool = False) -> str:
    """One pass over the file, every part hashed as it is read, and in a pool of THREADS each part already in
    S3 (`listed`) checked by its MD5, the others sent; then the upload completed. Returns the file's SHA-256.
    `trusted` (the upload was started here from the file as it is now): a listed part of the right size is taken
    without reading it, and the SHA-256 is computed beside the sending, by a thread of its own. Raises _Changed when a
    stored part differs (the parts sent meanwhile go with the upload, aborted)."""
    size = path.stat().st_size
    count = -(-size // part_size)
    hasher = concurrent.futures.ThreadPoolExecutor(1) if trusted else None
    hashing = hasher.submit(file_sha256, path) if hasher else None  # remembered by _send, once, when it is done
    pool = concurrent.futures.ThreadPoolExecutor(THREADS)
    running: dict[concurrent.futures.Future, tuple[int, int]] = {}
    etags: dict[int, str] = {}
    digest = hashlib.sha256()
    counted = [0]  # bytes shown on the bar by this call

    def advance(length: int) -> None:
        counted[0] += length
        bar.update(length)

    def settle(block: bool) -> None:
        done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED if block else
                                          concurrent.futures.ALL_COMPLETED)
        for future in done:
            number, length = running.pop(future)
            if number in listed:
                if not future.result():
                    raise _Changed()
                etags[number] = listed[number]["ETag"]
            else:
                etags[number] = future.result()["ETag"]
            advance(length)

    try:
        with open(path, "rb") as f:
            for number in range(1, count + 1):
                length = min(part_size, size - (number - 1) * part_size)
                if trusted and number in listed and listed[number]["Size"] == length:
                    f.seek(length, os.SEEK_CUR)
                    etags[number] = listed[number]["ETag"]
                    advance(length)
                    continue
                chunk = f.read(part_size)
                if hashing is None:
                    digest.update(chunk)  # while the pool sends: the hashing costs no extra pass
                if number in listed:
                    future = pool.submit(_same_part, chunk, listed[number])
                else:
                    future = pool.submit(s3.upload_part, Bucket=bucket, Key=key, UploadId=upload_id,
                                         PartNumber=number, Body=chunk)
                running[future] = (number, len(chunk))
                while len(running) >= 2 * THREADS:  # at most 2 parts per thread in memory
                    settle(block=True)
        settle(block=False)
    except _Changed:
        bar.update(-counted[0])  # the file is sent whole instead
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if hasher:
            hasher.shutdown(wait=True, cancel_futures=True)
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": etags[n]} for n in range(1, count + 1)]})
    return hashing.result() if hashing else digest.hexdigest()


def upload(data_dir: Path, destination: str, session=None, part_size: int = PART_SIZE, progress: bool = True,
           log=print) -> dict[str, str]:
    """Upload a pack folder to `destination`; returns {channel: S3 URI} for `launch`."""
    import boto3
    from tqdm import tqdm

    prefix = S3Uri.parse(destination, "destination")
    files = plan(Path(data_dir), prefix)
    session = session or boto3.session.Session()
    region_of(session)
    from botocore.config import Config

    s3 = session.client("s3", config=Config(max_pool_connections=THREADS))  # a connection per thread, reused
    bucket_region(s3, prefix.bucket)
    total = sum(p.local.stat().st_size for p in files)
    skipped = sent = 0
    with tqdm(total=total, unit="B", unit_scale=True, desc="upload", disable=not progress) as bar:
        for item in files:
            where = f"s3://{prefix.bucket}/{item.key}"
            with calling(f"uploading {item.local.name} to {where}"):
                if _unchanged(s3, prefix.bucket, item.key, item.local):
                    skipped += 1
                    bar.update(item.local.stat().st_size)
                    continue
                try:
                    _send(s3, prefix.bucket, item.key, item.local, part_size, bar, log)
                except KeyboardInterrupt:
                    log(f"interrupted: the parts of {item.local.name} sent so far stay in S3; run the same "
                        "command again to resume")
                    raise
            sent += 1
    log(f"uploaded {sent} file(s), {skipped} already there unchanged")
    return {p.channel: str(prefix.join(p.channel)) + "/" for p in files if p.channel}


def put_file(path: Path, uri: S3Uri, session, progress: bool = True, log=print) -> bool:
    """Upload one file to `uri` as `upload` sends each file (skipped when unchanged there, resumed when cut
    short); True when it was sent, False when S3 held it already."""
    from botocore.config import Config
    from tqdm import tqdm

    s3 = session.client("s3", config=Config(max_pool_connections=THREADS))
    bucket_region(s3, uri.bucket)
    with calling(f"uploading {path.name} to {uri}"):
        if _unchanged(s3, uri.bucket, uri.key, path):
            return False
        with tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc="upload", disable=not progress) as bar:
            _send(s3, uri.bucket, uri.key, path, PART_SIZE, bar, log)
    return True
