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



def test_colour_jitter_runs_in_loader_threads():
    """MXNet's fused random_color_jitter op crashed the process (segmentation fault) when two loader threads ran
    it (crop_color, mobilenet0.25, 128 px): the recipe's colour jitter runs in threads, as the loader does."""
    import threading

    import mxnet as mx
    from magiccards.train.classification import colour_jitter
    from mxnet.gluon.data.vision import transforms

    jitter = transforms.Compose(colour_jitter(0.3, 0.3, 0.3, 0.05))
    image = mx.nd.array(np.random.default_rng(0).integers(0, 255, (96, 96, 3)), dtype="uint8")
    outputs = [jitter(image).asnumpy()]  # Compose hybridizes: its graph is built once, as the first batch does

    def work():
        for _ in range(400):
            outputs.append(jitter(image).asnumpy())

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outputs) == 1201 and outputs[0].shape == (96, 96, 3) and outputs[0].dtype == np.uint8
    assert len({o.tobytes() for o in outputs[:50]}) > 10  # jittered (threads may repeat one another's draws)
