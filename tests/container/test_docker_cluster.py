"""Two hosts on a private Docker network, MXNet parameter server (dist_sync), SageMaker host names."""
import mxnet as mx
import numpy as np
import pytest
from magiccards.container.cluster import run_cluster
from magiccards.container.local_run import run_local

pytestmark = [pytest.mark.docker, pytest.mark.slow]

HP = {"network": "resnet18_v1b", "image_shape": "3,32,32", "epochs": "4", "mini_batch_size": "8",
      "optimizer": "adam", "learning_rate": "0.002", "seed": "2"}


def _last_weights(job):
    last = sorted((job / "checkpoints").glob("epoch-0004-batch-*"))[-1]
    return mx.nd.load(str(last / "model.params"))


def test_two_hosts_train_in_sync(docker_client, packed_cards, tmp_path):
    try:
        docker_client.images.get("magiccards:cpu")
    except Exception:
        pytest.fail("magiccards:cpu is not built; `make test` builds it")
    lines = []
    model_dir = run_cluster(packed_cards, tmp_path / "job", HP, 2, log=lines.append)
    ranks = set()
    for host in ("algo-1", "algo-2"):
        joined = [line for line in lines if line.startswith(f"[{host}] {host}: worker ") and line.endswith(" of 2")]
        assert joined, lines[-40:]
        ranks.add(joined[0].split(" worker ")[1].split(" of ")[0])
        assert any(line.startswith(f"[{host}] Epoch[3] Train-accuracy=") for line in lines)
    assert ranks == {"0", "1"}
    assert (model_dir / "image-classification-0000.params").is_file()
    assert not list((tmp_path / "job" / "algo-2" / "model").iterdir())  # only the first host writes the model
    # the learned weights are the synchronised ones: both hosts end with the same parameters
    a, b = _last_weights(tmp_path / "job" / "algo-1"), _last_weights(tmp_path / "job" / "algo-2")
    weights = [k for k in a if k.endswith(".weight")]  # convolutions and dense layers (BatchNorm statistics stay local)
    assert weights
    for k in weights:
        np.testing.assert_allclose(a[k].asnumpy(), b[k].asnumpy(), rtol=1e-4, atol=1e-5, err_msg=k)
    # and reach a single host's quality
    accuracy = lambda ls: max(float(l.rsplit("=", 1)[1]) for l in ls if "Validation-accuracy=" in l)  # noqa: E731
    single = []
    run_local(packed_cards, tmp_path / "single", HP, log=single.append)
    two = [l.split("] ", 1)[1] for l in lines if l.startswith("[algo-1] ")]
    assert accuracy(two) >= accuracy(single) - 0.15
