"""Writing files so that a file that exists is complete: write under a temporary name, rename at the end.

Every writer of the project goes through `atomic_path` (or `write_text_atomic`): an interrupted or
failed write leaves the previous file (or nothing) and no temporary file behind.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from magiccards.errors import UserError


def temporary_name(path: Path) -> Path:
    """The hidden temporary name beside `path` that `atomic_path` writes to."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed.

    The caller may write a file or make a folder there. The parent folder is created when missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    _remove(tmp)
    try:
        yield tmp
        with signals_held():  # a folder is swapped in two steps: never cut between them
            if tmp.is_dir() and path.is_dir():
                shutil.rmtree(path)
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_paths(*paths: Path) -> Iterator[list[Path]]:
    """`atomic_path` for files that belong together (a recipe in JSON and YAML, an export and its record):
    yields their temporary paths; on success all replace their targets in one go, with Ctrl-C and SIGTERM
    held back until the last rename, so that an interruption leaves all the new files or all the old ones."""
    paths = [Path(p) for p in paths]
    tmps = [temporary_name(p) for p in paths]
    for path, tmp in zip(paths, tmps):
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove(tmp)
    try:
        yield tmps
        with signals_held():
            for path, tmp in zip(paths, tmps):
                if tmp.is_dir() and path.is_dir():
                    shutil.rmtree(path)
                os.replace(tmp, path)
    except BaseException:
        for tmp in tmps:
            _remove(tmp)
        raise


@contextlib.contextmanager
def signals_held(signals=(signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold back `signals` until the block ends, then deliver the first that came: for the few steps that must
    not be cut apart. The Python handlers are swapped (a signal mask would not do: the process's other threads,
    OpenBLAS's for one, would still take the signal and Python would act on it in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be set in the main thread, where Python acts on signals anyway
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            signal.raise_signal(received[0])  # now, with the handler it would have met


# what a full disk, a quota, a read-only or immutable target, or a path through a file looks like
WRITE_ERRORS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                errno.EISDIR, errno.ENOENT, errno.EEXIST)


DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


@contextlib.contextmanager
def writing(what: str, errnos: tuple[int, ...] = WRITE_ERRORS) -> Iterator[None]:
    """Turn a failure to write `what` (disk full, read-only, no such folder...: `errnos`) into a UserError
    that says so; other errors keep their traceback. Writers under `atomic_path` leave no temporary file."""
    try:
        yield
    except OSError as e:
        if e.errno not in errnos:
            raise
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        raise UserError(f"cannot write {what}{where}: {e.strerror or e}") from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
