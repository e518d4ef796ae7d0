"""Which devices the job trains on, and a clear error when the image and the machine do not match.

The GPU image's MXNet (`mxnet-cu112`) links the NVIDIA driver's `libcuda.so.1`, which only a GPU host
with the NVIDIA container runtime provides: without it `import mxnet` dies in the dynamic loader. So
`preflight` runs before MXNet is imported (container/entrypoint.py) and says what to do instead;
`contexts` checks, once MXNet is loaded, that the GPUs the job was given are usable.
"""
from __future__ import annotations

import ctypes
import importlib.metadata
import os

from magiccards.errors import DeviceError

GPU_INSTANCES = "ml.g4dn.*, ml.g5.*, ml.p3.*"


def mxnet_build() -> str | None:
    """The installed MXNet distribution: 'mxnet' (CPU), 'mxnet-cu112' (CUDA 11.2), ... or None."""
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name == "mxnet" or name.startswith("mxnet-cu"):
            return name
    return None


def driver_loads() -> bool:
    """Whether the NVIDIA driver's user-space library (libcuda.so.1) can be loaded here."""
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def requested_gpus(environ=os.environ) -> int:
    """SM_NUM_GPUS (what SageMaker and the toolkit say the job has), 0 when unset or not a number."""
    try:
        return max(0, int(environ.get("SM_NUM_GPUS", "0")))
    except ValueError:
        return 0


def preflight(environ=os.environ) -> None:
    """Refuse, in one line, a job MXNet cannot start: the GPU build without a driver, or GPUs asked of the CPU
    build. Imports no MXNet."""
    build = mxnet_build()
    gpus = requested_gpus(environ)
    if build and build.startswith("mxnet-cu") and not driver_loads():
        raise DeviceError(
            f"this is the GPU image ({build}): MXNet needs the NVIDIA driver (libcuda.so.1), which this machine "
            f"does not provide. Run it on a GPU instance ({GPU_INSTANCES}) or with `docker run --gpus all` on a "
            "host with the NVIDIA driver and container toolkit; on a CPU machine use the CPU image (magiccards:cpu)")
    if gpus and build == "mxnet":
        raise DeviceError(
            f"SM_NUM_GPUS={gpus} but this image's MXNet is the CPU build: use the GPU image for GPU instances "
            "(`magiccards image --gpu`, then publish it), or a CPU instance type for this one")


def contexts(num_gpus: int):
    """The MXNet contexts of a job given `num_gpus` GPUs (the CPU when 0); GPUs CUDA cannot see are an error."""
    import mxnet as mx

    if num_gpus <= 0:
        return [mx.cpu()]
    if mxnet_build() == "mxnet":
        raise DeviceError(f"the job has {num_gpus} GPU(s) but this image's MXNet is the CPU build: use the GPU image "
                          "(`magiccards image --gpu`) on GPU instances")
    try:
        visible = mx.context.num_gpus()
    except mx.base.MXNetError as e:
        raise DeviceError(f"the job has {num_gpus} GPU(s) but CUDA reports an error ({str(e).splitlines()[0]}): "
                          "check the NVIDIA driver (CUDA 11.2 needs 450.80 or newer)") from None
    if visible < num_gpus:
        raise DeviceError(f"the job has {num_gpus} GPU(s) but CUDA sees {visible}: check NVIDIA_VISIBLE_DEVICES "
                          "and the driver (CUDA 11.2 needs 450.80 or newer)")
    return [mx.gpu(i) for i in range(num_gpus)]
