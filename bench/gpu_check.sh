#!/usr/bin/env bash
# The GPU check: run the GPU image's training on a machine with NVIDIA GPUs, in one go (about 5-8 minutes).
#
#   bash bench/gpu_check.sh [IMAGE]        IMAGE default magiccards:gpu (or an ECR URI: it is pulled)
#   DRY_RUN=1 bash bench/gpu_check.sh magiccards:cpu   the same steps on the CPU, on little data (checks the
#                                          script itself on a machine without GPUs; its figures mean nothing)
#
# Needs: Docker with the NVIDIA container toolkit (`docker run --gpus all` works), an NVIDIA driver for
# CUDA 11.2 or newer (>= 450.80). Builds nothing: data is generated and packed inside the image, and each
# run is `magiccards train` inside the image (the SageMaker toolkit's own code path: it counts the GPUs
# with nvidia-smi, as on a SageMaker GPU instance). It checks what could not be run where the image was
# made: data parallel over SM_NUM_GPUS, float16 classification, the detector's float32 fallback.
# Prints images/s per GPU count, float16 / float32, and each run's validation metric.
set -euo pipefail

IMAGE="${1:-magiccards:gpu}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/magiccards-gpu-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
chmod 777 "$WORK"

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "pulling $IMAGE ..."
  docker pull "$IMAGE"
fi
DRY_RUN="${DRY_RUN:-}"
COUNT=3000; SCENES=1500; EPOCHS=4
if [ -n "$DRY_RUN" ]; then
  GPUS=1; COUNT=120; SCENES=60; EPOCHS=2
  echo "dry run on the CPU: the steps and the report, not the figures"
else
  GPUS="$(docker run --rm --gpus all --entrypoint nvidia-smi "$IMAGE" --list-gpus | grep -c '^GPU ' || true)"
fi
if [ "${GPUS:-0}" -lt 1 ]; then
  echo "error: no GPU is visible to containers (is the NVIDIA container toolkit installed? try: docker run --rm --gpus all $IMAGE nvidia-smi)" >&2
  exit 1
fi
[ -n "$DRY_RUN" ] || echo "$GPUS GPU(s): $(docker run --rm --gpus all --entrypoint nvidia-smi "$IMAGE" --query-gpu=name,driver_version --format=csv,noheader | sort | uniq -c | xargs)"

in_image() {  # in_image DEVICES ARGS...: magiccards ARGS in the image, with the GPUs DEVICES ("none", "all", "0")
  local devices="$1"; shift
  local gpu_flag=()
  [ -n "$DRY_RUN" ] && devices=none
  case "$devices" in
    none) ;;
    all) gpu_flag=(--gpus all) ;;
    *) gpu_flag=(--gpus "\"device=$devices\"") ;;
  esac
  docker run --rm "${gpu_flag[@]}" --shm-size 2g -v "$WORK:/work" --entrypoint magiccards "$IMAGE" "$@"
}

echo "generating and packing data (in the image) ..."
in_image none synth /work/cards --task classification --count $COUNT --classes 6 --seed 1 >/dev/null
in_image none pack /work/cards /work/cards-rec --resize 160 >/dev/null
in_image none synth /work/scenes --task detection --count $SCENES --classes 6 --seed 2 >/dev/null
in_image none pack /work/scenes /work/scenes-rec --resize 320 >/dev/null

declare -A SPEED METRIC
run() {  # run NAME DEVICES DATA HYPERPARAMETERS...
  local name="$1" devices="$2" data="$3"; shift 3
  local started log
  started=$(date +%s)
  log="$WORK/$name.log"
  if ! in_image "$devices" train "/work/$data" --job-dir "/work/job-$name" "$@" >"$log" 2>&1; then
    echo "FAILED $name (last lines of its log):"; tail -n 15 "$log"; SPEED[$name]="failed"; METRIC[$name]="-"; return
  fi
  # images/s: the mean of the epochs after the first (the first includes cuDNN's autotuning)
  SPEED[$name]="$(grep -oE 'Epoch\[[0-9]+\] Speed: [0-9.]+' "$log" | awk 'NR>1 {s+=$3; n++} END {if (n) printf "%.1f", s/n; else print "?"}')"
  METRIC[$name]="$(grep -oE '(Validation-accuracy=|validation mAP <score>=\()[0-9.]+' "$log" | tail -n1 | grep -oE '[0-9.]+$' || echo '?')"
  echo "$name: ${SPEED[$name]} img/s, validation ${METRIC[$name]}, $(( $(date +%s) - started )) s (on: $(grep -oE 'on \[.*\]' "$log" | head -n1))"
}

CLS=(--network resnet18_v1b --image_shape 3,128,128 --epochs $EPOCHS --mini_batch_size 64 --optimizer sgd
     --learning_rate 0.05 --augmentation_type crop --use_pretrained_model 0)
DET=(--network ssd_300_mobilenet0.25 --image_shape 256 --epochs $EPOCHS --mini_batch_size 32 --learning_rate 0.01
     --use_pretrained_model 0)
ALL="all"
run cls-fp32-1gpu 0 cards-rec "${CLS[@]}" --precision_dtype float32
run cls-fp16-1gpu 0 cards-rec "${CLS[@]}" --precision_dtype float16
if [ "$GPUS" -gt 1 ]; then
  run cls-fp32-${GPUS}gpu $ALL cards-rec "${CLS[@]}" --precision_dtype float32
  run cls-fp16-${GPUS}gpu $ALL cards-rec "${CLS[@]}" --precision_dtype float16
fi
run det-1gpu 0 scenes-rec "${DET[@]}"
run det-fp16-request-1gpu 0 scenes-rec "${DET[@]}" --precision_dtype float16   # must fall back to float32
if [ "$GPUS" -gt 1 ]; then
  run det-${GPUS}gpu $ALL scenes-rec "${DET[@]}"
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2fx", a/b; else print "-" }'; }
echo
echo "| run | images/s | validation metric |"
echo "| --- | ---: | ---: |"
for name in $(printf '%s\n' "${!SPEED[@]}" | sort); do
  echo "| $name | ${SPEED[$name]} | ${METRIC[$name]} |"
done
echo
echo "float16 / float32, classification, 1 GPU: $(ratio "${SPEED[cls-fp16-1gpu]}" "${SPEED[cls-fp32-1gpu]}")"
if [ "$GPUS" -gt 1 ]; then
  echo "$GPUS GPUs / 1 GPU: classification $(ratio "${SPEED[cls-fp32-${GPUS}gpu]}" "${SPEED[cls-fp32-1gpu]}") (float32), " \
       "$(ratio "${SPEED[cls-fp16-${GPUS}gpu]}" "${SPEED[cls-fp16-1gpu]}") (float16); detection" \
       "$(ratio "${SPEED[det-${GPUS}gpu]}" "${SPEED[det-1gpu]}")"
fi
if grep -q "trains in float32" "$WORK/det-fp16-request-1gpu.log"; then
  echo "detection with precision_dtype=float16: fell back to float32 (as documented)"
else
  echo "detection with precision_dtype=float16: NO float32 fallback line in its log"
fi
