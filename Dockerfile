# deeplens-magiccards training image: SageMaker runs `docker run IMAGE train`.
# `train` is the sagemaker-training toolkit's entry point; it runs SAGEMAKER_TRAINING_MODULE.
#
# CPU (default):  docker build -t magiccards:cpu .
# GPU:            docker build -t magiccards:gpu --build-arg VARIANT=gpu .
#                 (the same base: MXNet for CUDA 11.2 and NVIDIA's libraries come from PyPI,
#                 container/requirements-gpu.txt; the host's driver provides libcuda.so.1)
# Without a registry (this project's machines): make image / make image-gpu (the local debootstrap base image)
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG VARIANT=cpu

FROM ${BASE_IMAGE} AS deps
# `magiccards image` removes what earlier builds left behind by these labels (see container/image.py); the newest
# build stage of each variant stays, and with it (its parent) this stage: the next build's cache
LABEL magiccards.stage=build
ARG VARIANT=cpu
LABEL magiccards.variant=${VARIANT}
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# sagemaker-training builds a small C extension: gcc and the Python headers, in this stage only
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && if [ ! -e /usr/local/include/python3.11/Python.h ]; then apt-get install -y --no-install-recommends python3-dev; fi \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The dependencies alone, from pyproject.toml (the packages' folders and README empty): a change of the project's
# own code or README leaves this layer cached and rebuilds in seconds.
# gluoncv pulls opencv-python, which needs libGL; the headless build (a declared dependency) is kept instead.
# VARIANT=gpu swaps the CPU MXNet for mxnet-cu112 and the NVIDIA libraries it links (no headers, and not
# libcusolverMg, 179 MB that nothing loads).
COPY pyproject.toml /src/
COPY container/requirements-gpu.txt /src/container/
RUN for room in magiccards data data/formats train serve deeplens container; do \
      mkdir -p "/src/$room" && touch "/src/$room/__init__.py"; done \
 && touch /src/README.md \
 && pip install /src && pip uninstall -y deeplens-magiccards && rm -rf /src/build /src/*.egg-info \
 && headless="$(pip freeze | grep '^opencv-python-headless==')" \
 && pip uninstall -y opencv-python && pip install --force-reinstall --no-deps "${headless}" \
 && if [ "${VARIANT}" = gpu ]; then \
      pip uninstall -y mxnet && pip install --no-deps -r /src/container/requirements-gpu.txt \
      && nvidia=/opt/venv/lib/python3.11/site-packages/nvidia \
      && rm -rf "$nvidia"/*/include "$nvidia"/cusolver/lib/libcusolverMg.so.* ; \
    elif [ "${VARIANT}" != cpu ]; then echo "VARIANT is cpu or gpu, not ${VARIANT}" >&2; exit 1; fi \
 && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM deps AS build
# the project itself, as a wheel (installed into the final stage without its dependencies: they are there)
COPY pyproject.toml README.md /src/
COPY magiccards /src/magiccards
COPY data /src/data
COPY train /src/train
COPY serve /src/serve
COPY deeplens /src/deeplens
# (container/weights/ is copied into the final stage only, so baking weights in keeps the build cached)
COPY container/*.py container/*.sh container/*.txt /src/container/
RUN pip wheel --no-deps -w /wheels /src

FROM ${BASE_IMAGE} AS runtime
LABEL magiccards.stage=final
# MXNet's wheel links OpenMP from the system
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libquadmath0 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=deps /opt/venv /opt/venv
COPY --from=build /wheels /tmp/wheels
RUN /opt/venv/bin/pip install --no-deps --no-index --no-cache-dir --disable-pip-version-check /tmp/wheels/*.whl && rm -rf /tmp/wheels \
 && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +
# OpenVINO's usage telemetry off for whoever runs OpenVINO's tools in the image (its documented consent file)
RUN /opt/venv/bin/python -m magiccards.telemetry
# the GPU variant's NVIDIA libraries are found by the loader (ldconfig), for every process of the image
RUN if [ -d /opt/venv/lib/python3.11/site-packages/nvidia ]; then \
      ls -d /opt/venv/lib/python3.11/site-packages/nvidia/*/lib > /etc/ld.so.conf.d/magiccards-nvidia.conf && ldconfig; \
    fi
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg \
    SAGEMAKER_TRAINING_MODULE=magiccards.train.entry:main
# ImageNet weights baked in by `magiccards image --weights` (train/weights.py looks here after the pretrained channel)
COPY container/weights/ /opt/magiccards/weights/
WORKDIR /opt/ml
# SageMaker runs `docker run IMAGE train` (training) or `docker run IMAGE serve` (hosting)
ENTRYPOINT ["python", "-m", "magiccards.container.entrypoint"]
CMD ["train"]

FROM runtime AS runtime-cpu
FROM runtime AS runtime-gpu
# the NVIDIA container runtime mounts the driver and the GPUs into images that ask for them (as nvidia/cuda's do)
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
FROM runtime-${VARIANT}
