# deeplens-magiccards training image: SageMaker runs `docker run IMAGE train`.
# `train` is the sagemaker-training toolkit's entry point; it runs SAGEMAKER_TRAINING_MODULE.
#
# CPU (default):  docker build -t magiccards:cpu .
# Without a registry (this project's machines): make image  (uses the local debootstrap base image)
# GPU:            docker build -t magiccards:gpu \
#                   --build-arg BASE_IMAGE=nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04 \
#                   --build-arg MXNET_PACKAGE=mxnet-cu112==1.9.1 .
#                 (a CUDA base needs Python 3.11 installed first; see README "GPU image")
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# `magiccards image` removes what earlier builds left behind by this label (see container/image.py)
LABEL magiccards.stage=build
ARG MXNET_PACKAGE=mxnet==1.9.1
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# sagemaker-training builds a small C extension: gcc and the Python headers, in this stage only
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && if [ ! -e /usr/local/include/python3.11/Python.h ]; then apt-get install -y --no-install-recommends python3-dev; fi \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md /src/
COPY magiccards /src/magiccards
COPY data /src/data
COPY train /src/train
COPY serve /src/serve
COPY deeplens /src/deeplens
COPY container /src/container
# gluoncv pulls opencv-python, which needs libGL; the headless build (a declared dependency) is kept instead
RUN pip install "${MXNET_PACKAGE}" /src \
 && if [ "${MXNET_PACKAGE%%=*}" != "mxnet" ]; then pip uninstall -y mxnet; pip install --force-reinstall --no-deps "${MXNET_PACKAGE}"; fi \
 && headless="$(pip freeze | grep '^opencv-python-headless==')" \
 && pip uninstall -y opencv-python && pip install --force-reinstall --no-deps "${headless}" \
 && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
LABEL magiccards.stage=final
# MXNet's wheel links OpenMP from the system
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libquadmath0 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg \
    SAGEMAKER_TRAINING_MODULE=magiccards.train.entry:main
WORKDIR /opt/ml
# SageMaker runs `docker run IMAGE train` (training) or `docker run IMAGE serve` (hosting)
ENTRYPOINT ["python", "-m", "magiccards.container.entrypoint"]
CMD ["train"]
