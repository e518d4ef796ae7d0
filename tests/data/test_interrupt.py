"""Ctrl-C during the long dataset commands: exit 130 with one line, no traceback, no partial output."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def _interrupt(*args, when: bytes) -> tuple[int, str]:
    """Run `magiccards ARGS` and press Ctrl-C (SIGINT to its process group) once stderr shows `when`."""
    p = subprocess.Popen([sys.executable, "-m", "magiccards.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True)
    seen = b""
    while when not in seen:
        chunk = os.read(p.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
    os.killpg(p.pid, signal.SIGINT)
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        raise AssertionError(f"magiccards {args[0]} did not end within 30 s of Ctrl-C") from None
    return p.returncode, (seen + p.stderr.read()).decode(errors="replace")


# The progress bar appears just before the worker pool starts: Ctrl-C then lands while it starts, the
# moment a plain multiprocessing.Pool can be left hanging; `1/` is a moment of steady work.
@pytest.mark.parametrize("when", [b"0/100000", b"0/100000", b"0/100000", b" 1/100000"])
def test_ctrl_c_during_synth(tmp_path, when):
    code, err = _interrupt("synth", tmp_path / "s", "--task", "detection", "--count", "100000", "--workers", "2",
                           when=when)
    assert code == 130 and "interrupted" in err
    assert "Traceback" not in err and "Process" not in err
    assert not list((tmp_path / "s").rglob("*.tmp"))  # every file written is whole


def test_ctrl_c_during_pack_leaves_earlier_output_alone(tmp_path):
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1600, 1600, 3), dtype=np.uint8)).save(photo, quality=90)
    for c in ("a", "b"):
        (tmp_path / "in" / c).mkdir(parents=True)
        for i in range(300):  # hard links: each is decoded and re-encoded at full size before duplicates are found
            os.link(photo, tmp_path / "in" / c / f"{i}.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.rec").write_bytes(b"an earlier pack")
    code, err = _interrupt("pack", tmp_path / "in", out, "--workers", "2", when=b" 1/600")
    assert code == 130 and "interrupted" in err
    assert "Traceback" not in err and "Process" not in err
    assert (out / "train.rec").read_bytes() == b"an earlier pack"
    assert sorted(p.name for p in out.iterdir()) == ["train.rec"]  # temporary files are gone
