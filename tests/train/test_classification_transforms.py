"""Every classification augmentation_type turns a decoded image into a normalised CHW float32 tensor."""
import mxnet as mx
import numpy as np
import pytest
from magiccards.train.classification import eval_transform, train_transform
from magiccards.train.hyperparameters import AUGMENTATIONS, resolve


@pytest.mark.parametrize("augmentation", ("",) + AUGMENTATIONS)
@pytest.mark.parametrize("resize", [None, 72])
def test_each_augmentation_gives_the_input_shape(augmentation, resize):
    raw = {"task": "classification", "image_shape": "3,48,40", "augmentation_type": augmentation}
    if resize:
        raw["resize"] = str(resize)
    hp = resolve(raw, "classification")
    image = mx.nd.array(np.random.default_rng(0).integers(0, 255, (90, 120, 3)), dtype=np.uint8)  # HWC, as decoded
    for transform in (train_transform(hp), eval_transform(hp)):
        for _ in range(3):  # random transforms: a few draws
            out = transform(image)
            assert out.shape == (3, 48, 40) and out.dtype == np.float32
            assert np.isfinite(out.asnumpy()).all() and -5 < float(out.mean().asscalar()) < 5
