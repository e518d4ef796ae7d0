"""The predictor of any model: one network (serve/predictor.py) or a two-stage model (serve/two_stage.py).

`serve`, `predict`, the Greengrass script and the benchmarks load models here, so each works with every
kind the model-directory contract opens (`magiccards/model_dir.py: open_model`).
"""
from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

from magiccards.model_dir import ModelDir, TwoStageDir, open_model

from .predictor import Predictor
from .two_stage import TwoStagePredictor


def load(model: ModelDir | TwoStageDir | Path | str, backend: str | None = None, threads: int | None = None):
    """The predictor of any model: a Predictor for one network, a TwoStagePredictor (serve/two_stage.py) for a
    two-stage model. `model` is an opened model, a model directory, a `model.tar.gz` or a folder holding one;
    an archive is unpacked into a folder of our own, removed by close(), `with`, or at exit."""
    if isinstance(model, ModelDir):
        return Predictor(model, backend=backend, threads=threads)
    if isinstance(model, TwoStageDir):
        return TwoStagePredictor(model, backend, threads)
    scratch = Path(tempfile.mkdtemp(prefix="magiccards-model-"))
    try:
        opened = open_model(Path(model), scratch / "model")
        predictor = (TwoStagePredictor(opened, backend, threads) if isinstance(opened, TwoStageDir)
                     else Predictor(opened, backend=backend, threads=threads))
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    predictor.close = weakref.finalize(predictor, shutil.rmtree, scratch, True)
    return predictor
