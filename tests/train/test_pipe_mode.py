"""Pipe mode: records streamed through FIFOs `<channel>_<n>` give the same training as File mode."""
import numpy as np
import pytest
from magiccards.container.local_run import run_local

from ..helpers import QUICK_HP, final_weights

pytestmark = pytest.mark.slow

HP = dict(QUICK_HP, epochs="2", seed="5")


def test_pipe_mode_matches_file_mode(packed_cards, tmp_path):
    file_lines, pipe_lines = [], []
    run_local(packed_cards, tmp_path / "file", HP, log=file_lines.append)
    run_local(packed_cards, tmp_path / "pipe", HP, input_mode="Pipe", log=pipe_lines.append)
    assert any("train (Pipe mode)" in line for line in pipe_lines)
    acc = lambda lines: [l for l in lines if "Validation-accuracy" in l]  # noqa: E731
    assert acc(pipe_lines) == acc(file_lines)
    a, b = final_weights(tmp_path / "file", 2), final_weights(tmp_path / "pipe", 2)
    for name in a:
        np.testing.assert_allclose(a[name].asnumpy(), b[name].asnumpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    assert (tmp_path / "pipe" / "model" / "classes.txt").read_text() == (packed_cards / "classes.txt").read_text()
    assert not list((tmp_path / "pipe" / "input" / "data").glob("train_*"))  # FIFOs cleaned up
