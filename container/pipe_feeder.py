"""Pipe mode on this machine: feed each channel's .rec into FIFOs `<channel>_0`, `<channel>_1`, ...

As SageMaker does, a new FIFO appears once the previous one was read to its end, for as long as the
job keeps reading. The feeder opens a FIFO for writing only when the job has opened it for reading,
so stopping never blocks; a job that stops reading mid-pass just ends that pass.
"""
from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from pathlib import Path

CHUNK = 1 << 20


class PipeFeeder:
    """Context manager: threads that keep `data_dir/<channel>_<n>` FIFOs supplied with `files[channel]`."""

    def __init__(self, data_dir: Path, files: dict[str, Path]):
        self.data_dir, self.files = Path(data_dir), files
        self.stop = threading.Event()
        self.passes: dict[str, int] = {name: 0 for name in files}
        self.threads = [threading.Thread(target=self._feed, args=(name, Path(f)), daemon=True)
                        for name, f in files.items()]

    def __enter__(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)
        for name in self.files:
            for fifo in self.data_dir.glob(f"{name}_*"):
                fifo.unlink(missing_ok=True)
        return False

    def _open_when_read(self, path: Path) -> int | None:
        while not self.stop.is_set():
            try:
                return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
                time.sleep(0.02)
        return None

    def _feed(self, name: str, source: Path) -> None:
        n = 0
        while not self.stop.is_set():
            path = self.data_dir / f"{name}_{n}"
            path.unlink(missing_ok=True)
            os.mkfifo(path)
            fd = self._open_when_read(path)
            if fd is None:
                return
            os.set_blocking(fd, True)
            try:
                with open(source, "rb") as src, os.fdopen(fd, "wb", buffering=0) as out:
                    shutil.copyfileobj(src, out, CHUNK)
            except BrokenPipeError:
                pass  # the job stopped reading this pass
            self.passes[name] = n + 1
            # the job reads to EOF then looks for the next FIFO; remove the spent one first
            path.unlink(missing_ok=True)
            n += 1
