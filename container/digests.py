"""SHA-256 of local files, remembered while the file is untouched, so that `upload` of an unchanged pack
folder reads nothing but the file's status.

A digest is kept in `$XDG_CACHE_HOME/magiccards/sha256.json` (default `~/.cache/...`) under the file's
absolute path with its device, inode, size, modification and status-change times in nanoseconds: any
write to the file (or a copy put in its place) changes the status-change time, which no tool can set
back, so a remembered digest is used only for the very file it was computed from. A cache that cannot be
read or written is ignored: the digest is then computed, as without it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from magiccards.files import write_text_atomic

BLOCK = 4 << 20
KEEP = 512  # files remembered; the oldest are forgotten first


def cache_file(name: str = "sha256.json") -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "magiccards" / name


def identity(path: Path) -> list[int]:
    """What must not change for a remembered digest to stand: device, inode, size, mtime and ctime (ns)."""
    stat = Path(path).stat()
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _read_cache(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def remembered(path: Path) -> str | None:
    """The SHA-256 remembered for the file, if it is untouched since."""
    path = Path(path).resolve()
    known = _read_cache(cache_file()).get(str(path))
    if isinstance(known, dict) and known.get("identity") == identity(path) and isinstance(known.get("sha256"), str):
        return known["sha256"]
    return None


def _keep(cache: Path, path: Path, entry: dict) -> None:
    entries = _read_cache(cache)
    entries.pop(str(path), None)
    entries[str(path)] = entry
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cache, json.dumps(dict(list(entries.items())[-KEEP:])))
    except OSError:
        pass  # a read-only or full home: what it would have saved is simply done again next time


def remember(path: Path, before: list[int], sha: str) -> None:
    """Remember `sha`, computed from the file as it was when its identity was `before`, unless it was
    written to since (then nothing is remembered)."""
    path = Path(path).resolve()
    if identity(path) == before:
        _keep(cache_file(), path, {"identity": before, "sha256": sha})


UPLOADS = "uploads.json"  # beside the digests: which multipart upload each file started, and from which version


def remember_upload(path: Path, before: list[int], upload_id: str) -> None:
    """Remember that the multipart upload `upload_id` sends the file as it was when its identity was `before`."""
    _keep(cache_file(UPLOADS), Path(path).resolve(), {"identity": before, "upload_id": upload_id})


def sent_unchanged(path: Path, upload_id: str) -> bool:
    """Whether `upload_id` was started by this machine from the file as it is now (untouched since): the parts it
    holds are then the file's, and a resume need not read them back to compare."""
    path = Path(path).resolve()
    known = _read_cache(cache_file(UPLOADS)).get(str(path))
    return isinstance(known, dict) and known.get("upload_id") == upload_id and known.get("identity") == identity(path)


def sha256_of(path: Path) -> str:
    """The file's SHA-256 (hex): remembered when the file is untouched since it was last computed."""
    known = remembered(path)
    if known is not None:
        return known
    before = identity(path)
    sha = file_sha256(path)
    remember(path, before, sha)
    return sha


def file_sha256(path: Path) -> str:
    """The file's SHA-256 (hex), read afresh in blocks; nothing remembered."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
