"""`magiccards image --weights`: GluonCV weights baked into the image are the second place a job looks."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TAG = "magiccards:weights-test"


def test_weights_baked_into_the_image_start_a_job(docker_client, packed_scenes, tmp_path):
    import mxnet as mx
    from gluoncv import model_zoo
    from magiccards.container.docker_run import run_docker
    from magiccards.container.image import WEIGHTS_DIR, build
    from magiccards.train import weights

    folder = tmp_path / "weights"
    folder.mkdir()
    net = model_zoo.get_model("mobilenet0.25", pretrained=False)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 64, 64)))
    net.save_parameters(str(folder / weights.file_names("mobilenet0.25")[0]))
    try:
        built = build(TAG, weights=[str(folder)], log=lambda line: None)
        assert built["tag"] == TAG
        lines = []
        hp = {"network": "ssd_300_mobilenet0.25", "image_shape": "128", "epochs": "1", "mini_batch_size": "16",
              "use_pretrained_model": "1", "num_workers": "0"}
        run_docker(packed_scenes, tmp_path / "job", hp, image=TAG, log=lines.append)
        said = [line for line in lines if "pretrained: mobilenet0.25 from the image's weights" in line]
        assert said and "/opt/magiccards/weights/mobilenet0.25-f0046a3d.params" in said[0]
    finally:
        for staged in WEIGHTS_DIR.glob("*.params"):
            staged.unlink()
        try:
            docker_client.images.remove(TAG, force=True)
        except Exception:
            pass
