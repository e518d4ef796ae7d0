"""`magiccards upload PACK_DIR s3://bucket/prefix`: a `pack` folder into S3, laid out as a job's channels.

    PREFIX/train/train.rec              channel `train` (File or Pipe mode: the prefix holds RecordIO only)
    PREFIX/validation/validation.rec    channel `validation`
    PREFIX/classes/classes.txt          channel `classes` (File mode; the job reads the class names there)
    PREFIX/classes/crop-rule.json       beside it, from `pack --crops` (the model card records the crop rule)
    PREFIX/pack/                        the .lst, .idx and pack-report.json, kept beside (not a channel)

Files go up in parts (multipart above one part's size, 8 parts at a time) behind one progress bar. A file already there
with the same size and SHA-256 (kept in the object's metadata) is skipped. An upload cut short (Ctrl-C,
a lost connection) leaves its parts in S3; the next run checks each stored part's MD5 against the local
file and sends only the parts that are missing.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
from pathlib import Path

from magiccards.aws import S3Uri, bucket_region, calling, region_of
from magiccards.data.crops import CROP_RULE_FILE
from magiccards.errors import DataError

PART_SIZE = 16 * 1024 * 1024  # S3 allows 5 MiB to 5 GiB per part, 10,000 parts
SHA_KEY = "sha256"  # x-amz-meta-sha256
THREADS = 8  # parts in flight, as boto3's transfer manager sends them (it has 10 threads)


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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unchanged(s3, bucket: str, key: str, size: int, sha: str) -> bool:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return head["ContentLength"] == size and head.get("Metadata", {}).get(SHA_KEY) == sha


def _pending_upload(s3, bucket: str, key: str, path: Path, part_size: int) -> tuple[str | None, dict[int, str]]:
    """An earlier, unfinished multipart upload of `key` whose stored parts all match `path`: (id, {part: etag})."""
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    for upload in sorted((u for u in uploads if u["Key"] == key), key=lambda u: u["Initiated"], reverse=True):
        parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload["UploadId"]).get("Parts", [])
        stored = {}
        with open(path, "rb") as f:
            for part in parts:
                f.seek((part["PartNumber"] - 1) * part_size)
                chunk = f.read(part_size)
                if len(chunk) != part["Size"] or f'"{hashlib.md5(chunk).hexdigest()}"' != part["ETag"]:
                    break
                stored[part["PartNumber"]] = part["ETag"]
            else:
                return upload["UploadId"], stored
    return None, {}


def _send(s3, bucket: str, key: str, path: Path, sha: str, part_size: int, bar, log) -> None:
    size = path.stat().st_size
    if size <= part_size:
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), Metadata={SHA_KEY: sha})
        bar.update(size)
        return
    upload_id, stored = _pending_upload(s3, bucket, key, path, part_size)
    if upload_id:
        log(f"resuming the upload of {path.name}: {len(stored)} part(s) already in S3")
    else:
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata={SHA_KEY: sha})["UploadId"]
    count = -(-size // part_size)
    pool = concurrent.futures.ThreadPoolExecutor(THREADS)
    running: dict[concurrent.futures.Future, tuple[int, int]] = {}

    def settle(block: bool) -> None:
        done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED if block else
                                          concurrent.futures.ALL_COMPLETED)
        for future in done:
            number, length = running.pop(future)
            stored[number] = future.result()["ETag"]
            bar.update(length)

    try:
        with open(path, "rb") as f:
            for number in range(1, count + 1):
                if number in stored:
                    f.seek(part_size, 1)
                    bar.update(min(part_size, size - (number - 1) * part_size))
                    continue
                chunk = f.read(part_size)
                running[pool.submit(s3.upload_part, Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                    Body=chunk)] = (number, len(chunk))
                while len(running) >= 2 * THREADS:  # at most 2 parts per thread in memory
                    settle(block=True)
        settle(block=False)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": stored[n]} for n in range(1, count + 1)]})


def upload(data_dir: Path, destination: str, session=None, part_size: int = PART_SIZE, progress: bool = True,
           log=print) -> dict[str, str]:
    """Upload a pack folder to `destination`; returns {channel: S3 URI} for `launch`."""
    import boto3
    from tqdm import tqdm

    prefix = S3Uri.parse(destination, "destination")
    files = plan(Path(data_dir), prefix)
    session = session or boto3.session.Session()
    region_of(session)
    s3 = session.client("s3")
    bucket_region(s3, prefix.bucket)
    total = sum(p.local.stat().st_size for p in files)
    skipped = sent = 0
    with tqdm(total=total, unit="B", unit_scale=True, desc="upload", disable=not progress) as bar:
        for item in files:
            size, sha = item.local.stat().st_size, sha256_of(item.local)
            where = f"s3://{prefix.bucket}/{item.key}"
            with calling(f"uploading {item.local.name} to {where}"):
                if _unchanged(s3, prefix.bucket, item.key, size, sha):
                    skipped += 1
                    bar.update(size)
                    continue
                try:
                    _send(s3, prefix.bucket, item.key, item.local, sha, part_size, bar, log)
                except KeyboardInterrupt:
                    log(f"interrupted: the parts of {item.local.name} sent so far stay in S3; run the same "
                        "command again to resume")
                    raise
            sent += 1
    log(f"uploaded {sent} file(s), {skipped} already there unchanged")
    return {p.channel: str(prefix.join(p.channel)) + "/" for p in files if p.channel}
