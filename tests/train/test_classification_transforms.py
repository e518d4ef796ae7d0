"""Every classification augmentation_type turns a decoded image into a normalised CHW float32 tensor."""
import mxnet as mx
import numpy as np
import pytest
from magiccards.train.classification import OnePerThread, eval_transform, train_transform
from magiccards.train.hyperparameters import AUGMENTATIONS, resolve

from ..helpers import run_in_child


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
    """MXNet's fused random_color_jitter op, and one hybridized transform shared by the loader's threads, crashed the
    process (segmentation faults, at times much later): the recipe's transforms run in threads, as the loader runs
    them, in a process of their own."""
    run_in_child(__name__, "transforms_in_threads")


def transforms_in_threads():
    import threading

    hp = resolve({"task": "classification", "image_shape": "3,96,96", "augmentation_type": "crop_color_transform"},
                 "classification")
    transform = OnePerThread(train_transform, hp)
    image = mx.nd.array(np.random.default_rng(0).integers(0, 255, (120, 110, 3)), dtype="uint8")
    outputs = []

    def work():
        for _ in range(300):
            outputs.append(transform(image).asnumpy())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outputs) == 1200 and all(o.shape == (3, 96, 96) and o.dtype == np.float32 for o in outputs)
    assert all(np.isfinite(o).all() for o in outputs[::50])
    assert len({o.tobytes() for o in outputs[:50]}) > 10  # augmented (threads may repeat one another's draws)


def test_each_loader_thread_builds_its_own_transform():
    import functools
    import operator
    import pickle
    import threading

    built = []
    transform = OnePerThread(lambda scale: built.append(threading.get_ident()) or (lambda x: x * scale), 3)
    seen, together = [], threading.Barrier(3)  # all alive at once: three distinct threads

    def work():
        seen.extend([transform(1), transform(2)])
        together.wait(10)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == [3, 3, 3, 6, 6, 6] and len(built) == len(set(built)) == 3  # one each, kept
    copy = pickle.loads(pickle.dumps(OnePerThread(functools.partial, operator.mul, 3)))  # as a loader process gets it
    assert copy(5) == 15
