"""train/devices.py in this (CPU) environment: GPUs asked of the CPU build are refused in one line."""
import pytest
from magiccards.train import devices

from magiccards.errors import DeviceError


def test_this_environment_is_the_cpu_build_without_a_driver():
    assert devices.mxnet_build() == "mxnet"
    assert devices.driver_loads() is False  # no NVIDIA driver on these machines


def test_gpus_asked_of_the_cpu_build_are_refused_before_mxnet_loads():
    devices.preflight({})  # no GPUs asked: fine
    devices.preflight({"SM_NUM_GPUS": "0"})
    with pytest.raises(DeviceError, match="SM_NUM_GPUS=2 but this image's MXNet is the CPU build"):
        devices.preflight({"SM_NUM_GPUS": "2"})
    assert devices.requested_gpus({"SM_NUM_GPUS": "x"}) == 0


def test_contexts():
    import mxnet as mx

    assert devices.contexts(0) == [mx.cpu()]
    with pytest.raises(DeviceError, match="the job has 1 GPU"):
        devices.contexts(1)
