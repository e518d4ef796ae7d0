"""The GPU image, checked on a machine without a GPU: every library MXNet links resolves inside the image but
the driver's libcuda.so.1, the Python packages import up to the driver, and a job started here fails in one
line with a FailureReason. `make test` builds it (make image-gpu); bench/gpu_check.sh runs it on real GPUs."""
from __future__ import annotations

import pytest

from magiccards.errors import TrainingFailed

pytestmark = [pytest.mark.docker, pytest.mark.slow]

GPU_IMAGE = "magiccards:gpu"
CPU_IMAGE = "magiccards:cpu"
LIBMXNET = "/opt/venv/lib/python3.11/site-packages/mxnet/libmxnet.so"


@pytest.fixture(scope="module")
def gpu_image(docker_client):
    try:
        return docker_client.images.get(GPU_IMAGE)
    except Exception:
        pytest.fail(f"{GPU_IMAGE} is not built; `make test` builds it (make image-gpu)")


def _run(docker_client, image: str, command: str, **kwargs) -> tuple[int, str]:
    container = docker_client.containers.run(image, ["-c", command], entrypoint="bash", detach=True, **kwargs)
    try:
        code = container.wait(timeout=300)["StatusCode"]
        return code, container.logs().decode()
    finally:
        container.remove(force=True)


def test_every_library_mxnet_links_is_in_the_image_but_the_driver(docker_client, gpu_image):
    code, out = _run(docker_client, GPU_IMAGE, f"ldd {LIBMXNET}")
    assert code == 0, out
    missing = sorted(line.split()[0] for line in out.splitlines() if "not found" in line)
    assert missing == ["libcuda.so.1"], out
    for soname in ("libcudart.so.11.0", "libcublas.so.11", "libcufft.so.10", "libcurand.so.10", "libcusolver.so.11",
                   "libcudnn.so.8", "libnccl.so.2", "libnvrtc.so.11.2", "libnvToolsExt.so.1"):
        line = next(line for line in out.splitlines() if line.strip().startswith(soname))
        assert "/site-packages/nvidia/" in line, line  # NVIDIA's PyPI wheels, found through ldconfig
    # cuDNN opens its sub-libraries at run time: they resolve too
    code, out = _run(docker_client, GPU_IMAGE, "ldd /opt/venv/lib/python3.11/site-packages/nvidia/cudnn/lib/*.so.8")
    assert code == 0 and "not found" not in out, out


def test_python_packages_import_up_to_the_driver(docker_client, gpu_image):
    code, out = _run(docker_client, GPU_IMAGE,
                     "python -c 'import magiccards.cli, magiccards.train.hyperparameters, sagemaker_training, boto3, "
                     "onnx, onnxruntime, cv2, PIL, numpy; from magiccards.train import devices; "
                     "print(devices.mxnet_build(), devices.driver_loads())' && python -c 'import mxnet'")
    assert "mxnet-cu112 False" in out, out
    assert code != 0 and "libcuda.so.1: cannot open shared object file" in out, out  # the driver, and only it


def test_the_gpu_image_on_a_machine_without_a_gpu_fails_in_one_line(gpu_image, packed_cards, tmp_path):
    from magiccards.container.docker_run import run_docker

    with pytest.raises(TrainingFailed) as info:
        run_docker(packed_cards, tmp_path / "job", {"epochs": "1"}, image=GPU_IMAGE, log=lambda line: None)
    assert "this is the GPU image (mxnet-cu112)" in str(info.value)
    failure = (tmp_path / "job" / "output" / "failure").read_text()
    assert "needs the NVIDIA driver (libcuda.so.1)" in failure and "Traceback" not in failure
    assert "ml.g4dn" in failure and "magiccards:cpu" in failure


def test_gpus_asked_of_the_cpu_image_are_a_clear_error(docker_client, tmp_path):
    output = tmp_path / "output"
    output.mkdir()
    container = docker_client.containers.run(CPU_IMAGE, ["train"], environment={"SM_NUM_GPUS": "1"}, detach=True,
                                             volumes={str(output): {"bind": "/opt/ml/output", "mode": "rw"}})
    try:
        code = container.wait(timeout=120)["StatusCode"]
        logs = container.logs().decode()
    finally:
        container.remove(force=True)
    assert code == 1 and "Traceback" not in logs
    assert logs.strip().splitlines() == [f"error: {(output / 'failure').read_text()}"]
    assert "SM_NUM_GPUS=1 but this image's MXNet is the CPU build" in logs


def test_the_gpu_image_is_the_cpu_image_plus_cuda(docker_client, gpu_image):
    env = dict(e.split("=", 1) for e in gpu_image.attrs["Config"]["Env"])
    cpu = docker_client.images.get(CPU_IMAGE)
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all" and "NVIDIA_VISIBLE_DEVICES" not in str(cpu.attrs["Config"]["Env"])
    assert gpu_image.attrs["Config"]["Entrypoint"] == cpu.attrs["Config"]["Entrypoint"]
    assert gpu_image.attrs["Size"] < 6e9  # only the libraries MXNet links (README gives the size)
