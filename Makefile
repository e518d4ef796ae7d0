# deeplens-magiccards: `make demo` runs the main job, `make test` runs the whole test suite.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BASE_IMAGE ?= magiccards/base:bookworm
IMAGE ?= magiccards:cpu
GPU_IMAGE ?= magiccards:gpu
DEMO := demo-output
DEMO_PORT ?= 8765
BENCH := bench-output
# two pytest-xdist workers: one runs the Docker tests in turn, both share the rest, module by module (tests/conftest.py)
TEST_WORKERS ?= 2
TEST_PARALLEL := -n $(TEST_WORKERS) --dist loadgroup
# pip on these machines warns about every configured local index it does not find; keep the log readable
QUIET_PIP := sed "/^WARNING: Location/d"
DEMO_CLASSIFIER := --job-dir $(DEMO)/cards-job --network resnet18_v1b --image_shape 3,64,64 --epochs 8 \
	--mini_batch_size 32 --optimizer adam --learning_rate 0.002 --lr_scheduler_step 5 --augmentation_type crop
DEMO_LINES := grep -E "Epoch\[[0-9]+\] (Validation-accuracy|Speed)|model directory|error"
BASE_LINES := grep -E "Epoch\[[0-9]+\] (Validation-accuracy|Speed)|validation mAP|pretrained|transfer|frozen|freeze|model directory|error"

.PHONY: install docker base-image image image-gpu test test-fast demo bench-pack bench-train bench-image bench-startup bench-serve bench-edge bench-upload bench-real bench-faces base-detector base-classifier two-stage faces-model clean

install: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,edge]' 2>&1 | $(QUIET_PIP)
	touch $@

docker:  ## install docker.io and debootstrap when missing, start dockerd when no engine answers
	bash container/ensure-docker.sh

base-image: install docker
	$(BIN)/magiccards base-image --tag $(BASE_IMAGE)

image: install docker  ## the training image; uses the local base image when python:3.11-slim cannot be pulled
	$(BIN)/magiccards image --tag $(IMAGE)

image-gpu: install docker  ## the GPU training image (mxnet-cu112 + NVIDIA's PyPI libraries), same Dockerfile
	$(BIN)/magiccards image --gpu --tag $(GPU_IMAGE)

# The SageMaker Python SDK (v2, for local mode) lives in its own venv: it pins packages MXNet cannot share.
SDK_VENV := .venv-sdk
$(SDK_VENV)/.installed:
	test -x $(SDK_VENV)/bin/python || $(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/pip install -q 'sagemaker==2.257.7' 2>&1 | $(QUIET_PIP)
	touch $@

# The Intel Model Optimizer with its MXNet front end (what DeepLens's mo.optimize wraps) left OpenVINO after
# 2023.3: it gets a venv of its own too (`magiccards deeplens check` finds .venv-mo/bin/mo).
MO_VENV := .venv-mo
$(MO_VENV)/.installed:
	test -x $(MO_VENV)/bin/python || $(PYTHON) -m venv $(MO_VENV)
	$(MO_VENV)/bin/pip install -q 'openvino-dev==2023.3.0' 'mxnet==1.9.1' 'numpy==1.23.5' 2>&1 | $(QUIET_PIP)
	touch $@

test: install base-image image image-gpu $(SDK_VENV)/.installed $(MO_VENV)/.installed
	MAGICCARDS_SDK_PYTHON=$(SDK_VENV)/bin/python $(BIN)/pytest -q $(TEST_PARALLEL) --durations=10

test-fast: install  ## the tests that need no Docker engine
	$(BIN)/pytest -q $(TEST_PARALLEL) -m "not docker"

demo: install
	rm -rf $(DEMO)
	$(BIN)/magiccards synth $(DEMO)/cards --task classification --count 600 --classes 6 --seed 1
	$(BIN)/magiccards pack $(DEMO)/cards $(DEMO)/cards-rec --resize 224
	$(BIN)/magiccards inspect $(DEMO)/cards-rec/train.rec --sheet $(DEMO)/cards-train.png --charts $(DEMO)/cards-stats.png
	$(BIN)/magiccards synth $(DEMO)/scenes --task detection --count 1600 --classes 6 --seed 1
	$(BIN)/magiccards pack $(DEMO)/scenes $(DEMO)/scenes-rec
	$(BIN)/magiccards inspect $(DEMO)/scenes-rec/train.rec --sheet $(DEMO)/scenes-train.png --charts $(DEMO)/scenes-stats.png
	@if docker info >/dev/null 2>&1; then \
		echo "Docker answers: training the classifier inside the image $(IMAGE), as SageMaker would"; \
		$(MAKE) --no-print-directory image; \
		$(BIN)/magiccards train $(DEMO)/cards-rec --docker --image $(IMAGE) $(DEMO_CLASSIFIER) 2>&1 | $(DEMO_LINES); \
	else \
		echo "Docker is not available (no engine answers; 'make docker' installs and starts one):"; \
		echo "training the classifier on this machine through the same toolkit entry point"; \
		$(BIN)/magiccards train $(DEMO)/cards-rec $(DEMO_CLASSIFIER) 2>&1 | $(DEMO_LINES); \
	fi
	@echo "Training a small SSD for about a minute, from the synthetic-card base detector shipped with magiccards (no"
	@echo "ImageNet base can be downloaded here; the log says where it starts):"
	$(BIN)/magiccards train $(DEMO)/scenes-rec --job-dir $(DEMO)/scenes-job --network ssd_300_mobilenet0.25 \
		--image_shape 256 --epochs 3 --lr_scheduler_step 2 --mini_batch_size 16 --optimizer adam \
		--learning_rate 0.001 --augmentation_type none --use_pretrained_model 1 2>&1 \
		| grep -E "validation mAP|Epoch\[[0-9]+\] Speed|synthetic-card base|model directory|error"
	@echo "The same start on 50 real photos of playing cards (tests/data/files/playing-cards, Apache-2.0), 40 to train:"
	$(BIN)/magiccards pack tests/data/files/playing-cards $(DEMO)/photos-rec --resize 300 > /dev/null
	$(BIN)/magiccards train $(DEMO)/photos-rec --job-dir $(DEMO)/photos-job --network ssd_300_mobilenet0.25 \
		--image_shape 300 --epochs 12 --lr_scheduler_step 9 --mini_batch_size 8 --optimizer adam \
		--learning_rate 0.001 --augmentation_type ssd --use_pretrained_model 1 2>&1 \
		| grep -E "validation mAP|model directory|error" | tail -n 2
	@echo "Your own cards from one picture each, no photo boxed: 24 card images (tests/data/files/card-faces, MIT) as 6 rank"
	@echo "classes drawn into 600 scenes, a detector trained from the shipped base:"
	rm -rf $(DEMO)/rank-faces && for rank in nine ten jack queen king ace; do mkdir -p $(DEMO)/rank-faces/$$rank && \
		cp tests/data/files/card-faces/$$rank-of-*.png $(DEMO)/rank-faces/$$rank/; done
	$(BIN)/magiccards synth $(DEMO)/faces-scenes --task detection --faces $(DEMO)/rank-faces --count 600 --size 300 \
		--distractors 0.2 --fans 0.3 --seed 1
	$(BIN)/magiccards pack $(DEMO)/faces-scenes $(DEMO)/faces-rec > /dev/null
	$(BIN)/magiccards train $(DEMO)/faces-rec --job-dir $(DEMO)/faces-job --network ssd_300_mobilenet0.25 \
		--image_shape 300 --epochs 4 --lr_scheduler_step 3 --mini_batch_size 16 --optimizer adam \
		--learning_rate 0.001 --augmentation_type none --use_pretrained_model 1 2>&1 \
		| grep -E "validation mAP|model directory|error" | tail -n 2
	@echo "... and a classifier of the crops of 300 larger scenes' boxes, combined with that detector: find, then name"
	@echo "(a two-minute model: its answers are drawn down to a score of 0.1, where a trained model's default is 0.3):"
	$(BIN)/magiccards synth $(DEMO)/faces-crop-scenes --task detection --faces $(DEMO)/rank-faces --count 300 \
		--size 544 --distractors 0.2 --fans 0.3 --seed 2
	$(BIN)/magiccards pack $(DEMO)/faces-crop-scenes $(DEMO)/faces-crops-rec --crops --resize 128 > /dev/null
	$(BIN)/magiccards train $(DEMO)/faces-crops-rec --job-dir $(DEMO)/faces-classifier-job --network mobilenet0.25 \
		--image_shape 3,128,128 --epochs 6 --lr_scheduler_step 4 --mini_batch_size 32 --optimizer adam \
		--learning_rate 0.001 --augmentation_type crop_color --use_pretrained_model 1 2>&1 \
		| grep -E "Validation-accuracy|model directory|error" | tail -n 2
	rm -rf $(DEMO)/faces-two-stage
	$(BIN)/magiccards combine $(DEMO)/faces-job/model $(DEMO)/faces-classifier-job/model --out $(DEMO)/faces-two-stage \
		| tail -n 1
	$(BIN)/magiccards predict $(DEMO)/faces-two-stage $$(ls tests/data/files/playing-cards/*.JPG | head -n 6) \
		--out $(DEMO)/faces-predicted --backend mxnet --score-threshold 0.1 | tail -n 1
	@echo "Exporting both models for the edge (ONNX Runtime, OpenVINO), each checked against MXNet on its own validation images:"
	for model in cards-job scenes-job; do for format in onnx openvino; do \
		$(BIN)/magiccards export $(DEMO)/$$model/model --format $$format | grep -E "parity|error"; done; done
	@echo "Packaging the classifier as an AWS IoT Greengrass v2 component (recipe + artifact; --publish uploads it):"
	$(BIN)/magiccards greengrass $(DEMO)/cards-job/model --out $(DEMO)/greengrass
	$(BIN)/magiccards synth $(DEMO)/new-scene --task detection --count 1 --classes 6 --seed 99 > /dev/null
	@echo "Find, then name: the detector and the classifier combined into one two-stage model, answering a new scene:"
	rm -rf $(DEMO)/two-stage
	$(BIN)/magiccards combine $(DEMO)/scenes-job/model $(DEMO)/cards-job/model --out $(DEMO)/two-stage
	$(BIN)/magiccards predict $(DEMO)/two-stage $(DEMO)/new-scene/images --out $(DEMO)/two-stage-predicted | tail -n 1
	@echo "Packaging the detector for AWS DeepLens (DeepLens layers only, checked against the trained model; the real"
	@echo "Model Optimizer check and a run of the generated Lambda need .venv-mo: make $(MO_VENV)/.installed):"
	$(BIN)/magiccards deeplens package $(DEMO)/scenes-job/model --out $(DEMO)/deeplens/scenes.tar.gz \
		|| echo "(a parity gate was missed: see above)"
	$(BIN)/magiccards deeplens lambda $(DEMO)/scenes-job/model --out $(DEMO)/deeplens/function --score-threshold 0.1
	@if test -x $(MO_VENV)/bin/mo; then \
		$(BIN)/magiccards deeplens simulate $(DEMO)/deeplens/function --package $(DEMO)/deeplens/scenes.tar.gz \
			--frames $(DEMO)/new-scene/images --out $(DEMO)/deeplens/simulated; \
	else echo "skipped running the Lambda: no $(MO_VENV)"; fi
	@echo "Serving the detector as a SageMaker endpoint would (magiccards serve) and sending it a new scene:"
	$(BIN)/magiccards serve $(DEMO)/scenes-job/model --port $(DEMO_PORT) --workers 1 > $(DEMO)/serve.log 2>&1 & \
		server=$$!; \
		$(BIN)/magiccards invoke http://127.0.0.1:$(DEMO_PORT) $(DEMO)/new-scene/images/*.jpg --out $(DEMO)/served --wait 120; \
		status=$$?; kill -TERM $$server; wait $$server; exit $$status
	@echo "demo done: contact sheets $(DEMO)/cards-train.png, $(DEMO)/scenes-train.png; charts $(DEMO)/*-stats.png;" \
		"models in $(DEMO)/cards-job/model, $(DEMO)/scenes-job/model; curves in $(DEMO)/*-job/output/data;" \
		"the served scene, drawn: $(DEMO)/served/; exports in $(DEMO)/*-job/model/exports;" \
		"answers of the two-stage model learnt from card images on real photos: $(DEMO)/faces-predicted/;" \
		"the two-stage model (detector, then classifier) and its answer: $(DEMO)/two-stage, $(DEMO)/two-stage-predicted/;" \
		"a Greengrass component in $(DEMO)/greengrass; the DeepLens package, Lambda and its annotated frame in" \
		"$(DEMO)/deeplens/"

# find, then name: a two-stage model from photos with VOC boxes (PHOTOS=folder), each stage from the shipped base
PHOTOS ?= tests/data/files/playing-cards
TWO_STAGE ?= two-stage-output
DETECTOR_EPOCHS ?= 20
CLASSIFIER_EPOCHS ?= 30

# the steps both two-stage targets share, in folder $(1) holding rec/ (detection) and crops-rec/ (pack --crops):
# the two stages trained from the shipped bases, combined into $(1)/model, its answers on $(PHOTOS) drawn;
# $(2): the detector's epochs, schedule and augmentation (photos: `ssd`; generated scenes vary enough as drawn: `none`)
define train_two_stage
	$(BIN)/magiccards train $(1)/rec --job-dir $(1)/detector-job --network ssd_300_mobilenet0.25 \
		--image_shape 300 $(2) --mini_batch_size 16 --optimizer adam --learning_rate 0.001 --use_pretrained_model 1
	$(BIN)/magiccards train $(1)/crops-rec --job-dir $(1)/classifier-job --network mobilenet0.25 \
		--image_shape 3,128,128 --epochs $(CLASSIFIER_EPOCHS) --mini_batch_size 32 --optimizer adam \
		--learning_rate 0.001 --augmentation_type crop_color --use_pretrained_model 1
	rm -rf $(1)/model
	$(BIN)/magiccards combine $(1)/detector-job/model $(1)/classifier-job/model --out $(1)/model
	$(BIN)/magiccards predict $(1)/model $(PHOTOS) --out $(1)/predicted | tail -n 1
endef

two-stage: install  ## a detector and a crop classifier of the same photo split, combined (PHOTOS=D TWO_STAGE=OUT)
	$(BIN)/magiccards pack $(PHOTOS) $(TWO_STAGE)/rec --resize 300 --seed 0
	$(BIN)/magiccards pack $(PHOTOS) $(TWO_STAGE)/crops-rec --crops --resize 128 --seed 0
	$(call train_two_stage,$(TWO_STAGE),--epochs $(DETECTOR_EPOCHS) --augmentation_type ssd)

FACES ?= tests/data/files/card-faces
FACES_MODEL ?= faces-output
FACES_SCENES ?= 6000
FACES_DETECTOR_EPOCHS ?= 6
FACES_DETECTOR_STEP ?= 4
FACES_CROP_SCENES ?= 2000

faces-model: install  ## find then name, from one image of each card: scenes, their crops, two models, combined (FACES=D FACES_MODEL=OUT PHOTOS=D)
	$(BIN)/magiccards synth $(FACES_MODEL)/scenes --task detection --faces $(FACES) --count $(FACES_SCENES) --size 300 \
		--distractors 0.2 --fans 0.3 --seed 1
	$(BIN)/magiccards synth $(FACES_MODEL)/crop-scenes --task detection --faces $(FACES) --count $(FACES_CROP_SCENES) \
		--size 544 --distractors 0.2 --fans 0.3 --seed 2
	$(BIN)/magiccards pack $(FACES_MODEL)/scenes $(FACES_MODEL)/rec
	$(BIN)/magiccards pack $(FACES_MODEL)/crop-scenes $(FACES_MODEL)/crops-rec --crops --resize 128
	$(call train_two_stage,$(FACES_MODEL),--epochs $(FACES_DETECTOR_EPOCHS) --lr_scheduler_step $(FACES_DETECTOR_STEP) \
		--augmentation_type none)

bench-pack: install
	$(BIN)/python bench/bench_pack.py --out $(BENCH)/pack

bench-train: install
	$(BIN)/python bench/bench_train.py all --out $(BENCH)/train

bench-startup: install  ## how fast the dataset tools start (no training stack loaded)
	$(BIN)/python bench/bench_startup.py --out $(BENCH)/startup

bench-serve: install  ## the predictor in-process vs over HTTP, on the demo's models (make demo first)
	test -f $(DEMO)/scenes-job/model/model-card.json || $(MAKE) --no-print-directory demo
	$(BIN)/python bench/bench_serve.py

bench-real: install  ## detectors and classifiers on real playing-card photos: from scratch, the synthetic bases, ImageNet (BENCH_REAL_ARGS="--data D --budget M --part P")
	$(BIN)/python bench/bench_real.py $(BENCH_REAL_ARGS)

bench-faces: install  ## recognisers from one image of each card (synth --faces), judged on real photos (BENCH_FACES_ARGS="--faces D --photos D --budget M")
	$(BIN)/python bench/bench_faces.py $(BENCH_FACES_ARGS)

bench-upload: install  ## magiccards upload's resumable multipart upload vs boto3's transfer manager (on moto_server)
	$(BIN)/python bench/bench_upload.py

bench-edge: install  ## MXNet vs ONNX Runtime vs OpenVINO FP32/FP16/INT8 on the demo's models (make demo first)
	test -f $(DEMO)/scenes-job/model/model-card.json || $(MAKE) --no-print-directory demo
	$(BIN)/python bench/bench_edge.py --out $(BENCH)/edge

bench-image: install docker base-image
	$(BIN)/python bench/bench_image.py --out $(BENCH)/image

# The synthetic-card base detector shipped in the package (train/base_models/): what a card looks like in a photo,
# class-agnostic ("card"), with features that still tell card designs apart. Its MobileNet starts from the
# synthetic-card base classifier below (which knows the 100 designs); the extra layers and heads first learn where
# cards are on that frozen MobileNet (10 epochs), then everything trains at a lower rate (5 epochs). Reproducible
# from the seeds; ~20 minutes on 2 cores. See its MODEL_CARD.md.
BASE_WORK := base-detector-output
BASE_MODEL := train/base_models/ssd_300_mobilenet0.25-card
BASE_DET := --network ssd_300_mobilenet0.25 --image_shape 256 --use_pretrained_model 1 --mini_batch_size 32 \
	--optimizer adam --augmentation_type color --seed 11
base-detector: install
	rm -rf $(BASE_WORK)
	$(BIN)/magiccards synth $(BASE_WORK)/scenes --task detection --count 5000 --size 320 --fans 0.35 --max-cards 4 \
		--backgrounds tests/data/files/raccoon --seed 11 \
		--classes "$$($(BIN)/python -c 'from magiccards.data.cards import base_classes; print(",".join(base_classes()))')"
	$(BIN)/magiccards pack $(BASE_WORK)/scenes $(BASE_WORK)/rec --one-class card --val-fraction 0.1 --seed 0
	mkdir -p $(BASE_WORK)/classifier
	cp $(BASE_CLS_MODEL)/training-state.params $(BASE_WORK)/classifier/mobilenet0.25.params
	$(BIN)/magiccards train $(BASE_WORK)/rec --job-dir $(BASE_WORK)/frozen $(BASE_DET) --pretrained $(BASE_WORK)/classifier \
		--freeze_layer_pattern '_mobilenet0_' --epochs 10 --learning_rate 0.002 --lr_scheduler_step 7 2>&1 | $(BASE_LINES)
	$(BIN)/magiccards train $(BASE_WORK)/rec --job-dir $(BASE_WORK)/job $(BASE_DET) --pretrained $(BASE_WORK)/frozen/model \
		--epochs 5 --learning_rate 0.0005 --lr_scheduler_step 4 2>&1 | $(BASE_LINES)
	mkdir -p $(BASE_MODEL) && find $(BASE_MODEL) -type f ! -name MODEL_CARD.md -delete
	cd $(BASE_WORK)/job/model && cp classes.txt model-card.json model-shapes.json hyperparams.json training-state.params \
		model_algo_1-symbol.json model_algo_1-0000.params $(CURDIR)/$(BASE_MODEL)/

# The synthetic-card base classifier shipped beside it: 100 card designs (the same base_classes()), MobileNet 0.25
# at 128 px (2 MB), the start of a classifier of your own cards (use_pretrained_model=1 for network mobilenet0.25).
BASE_CLS_WORK := base-classifier-output
BASE_CLS_MODEL := train/base_models/mobilenet0.25-card
base-classifier: install
	rm -rf $(BASE_CLS_WORK)
	$(BIN)/magiccards synth $(BASE_CLS_WORK)/cards --task classification --count 12000 --size 144 \
		--backgrounds tests/data/files/raccoon --seed 12 \
		--classes "$$($(BIN)/python -c 'from magiccards.data.cards import base_classes; print(",".join(base_classes()))')"
	$(BIN)/magiccards pack $(BASE_CLS_WORK)/cards $(BASE_CLS_WORK)/rec --val-fraction 0.1 --seed 0
	$(BIN)/magiccards train $(BASE_CLS_WORK)/rec --job-dir $(BASE_CLS_WORK)/job --network mobilenet0.25 \
		--image_shape 3,128,128 --use_pretrained_model 0 --epochs 15 --mini_batch_size 64 --optimizer adam \
		--learning_rate 0.004 --lr_scheduler_step 11 --augmentation_type crop_color --seed 12 2>&1 | $(DEMO_LINES)
	mkdir -p $(BASE_CLS_MODEL) && find $(BASE_CLS_MODEL) -type f ! -name MODEL_CARD.md -delete
	cd $(BASE_CLS_WORK)/job/model && cp classes.txt model-card.json model-shapes.json hyperparams.json \
		training-state.params image-classification-symbol.json image-classification-0000.params \
		$(CURDIR)/$(BASE_CLS_MODEL)/

clean:
	rm -rf $(DEMO) $(BENCH) .pytest_cache
