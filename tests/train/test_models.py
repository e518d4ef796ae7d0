"""The model factory: SSD anchors laid out for the job's image size."""
import mxnet as mx
import pytest
from magiccards.train import models


@pytest.mark.parametrize("network, size", [("ssd_300_mobilenet0.25", 128), ("ssd_300_mobilenet0.25", 256),
                                           ("ssd_512_mobilenet1.0", 300), ("ssd_512_resnet50_v1", 256),
                                           ("ssd_300_vgg16_atrous", 300)])
def test_anchors_tile_the_whole_image(network, size):
    net = models.build("detection", network, ["a", "b"], size)
    with mx.autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, size, size)))
    centers = anchors.reshape((-1, 4))[:, :2].asnumpy()  # (cx, cy, w, h)
    assert centers.min() < 0.1 * size and centers.max() > 0.9 * size  # GluonCV's 0.25 preset: 0.59
    widths = anchors.reshape((-1, 4))[:, 2].asnumpy()
    assert widths.min() < 0.1 * size  # anchor sizes scale with the image, not the preset's base size
