import pytest
from magiccards.train.hyperparameters import (
    ClassificationHyperparameters,
    DetectionHyperparameters,
    resolve,
)

from magiccards.errors import HyperparameterError


def test_builtin_defaults_per_task():
    cls = resolve({"num_classes": "4", "num_training_samples": "100"}, "classification")
    assert isinstance(cls, ClassificationHyperparameters) and isinstance(resolve({}, "detection"), DetectionHyperparameters)
    assert cls.learning_rate == 0.1 and cls.weight_decay == 1e-4 and cls.image_shape == (3, 224, 224)
    assert cls.epochs == 30 and cls.mini_batch_size == 32 and cls.optimizer == "sgd" and cls.use_pretrained_model == 0
    assert cls.network == "resnet152_v1b"
    det = resolve({}, "detection")
    assert det.learning_rate == 0.001 and det.weight_decay == 5e-4 and det.image_shape == (3, 300, 300)
    assert det.use_pretrained_model == 1 and det.nms_threshold == 0.45 and det.overlap_threshold == 0.5
    assert det.network == "ssd_300_vgg16_atrous"
    assert resolve({"base_network": "resnet-50", "image_shape": "512"}, "detection").network == "ssd_512_resnet50_v1"


def test_strings_as_sagemaker_passes_them():
    hp = resolve({"epochs": "3", "lr_scheduler_step": "10,20", "early_stopping": "True", "image_shape": "3,64,64",
                "learning_rate": "0.01", "num_layers": "18", "_tuning_objective_metric": "validation:accuracy",
                "sagemaker_region": "x"}, "classification")
    assert hp.epochs == 3 and hp.lr_scheduler_step == (10, 20) and hp.early_stopping is True
    assert hp.image_shape == (3, 64, 64) and hp.network == "resnet18_v1b"
    assert hp.as_strings()["lr_scheduler_step"] == "10,20"


@pytest.mark.parametrize("raw, message", [
    ({"optimizer": "adagrad"}, "optimizer='adagrad' is not allowed; choose one of: sgd, adam, rmsprop, nag"),
    ({"epochs": "ten"}, "epochs='ten' is not an integer"),
    ({"epochs": "0"}, "out of range"),
    ({"num_layers": "19"}, "choose one of: 18, 34, 50, 101, 152, 200"),
    ({"augmentation_type": "rotate"}, "choose one of: crop, crop_color, crop_color_transform"),
    ({"lr_scheduler_step": "20,10"}, "increasing epoch numbers"),
    ({"image_shape": "1,64,64"}, "only 3-channel"),
    ({"colour": "red"}, "unknown hyperparameter(s) colour"),
    ({"nms_threshold": "0.5"}, "applies to detection only"),
    ({"task": "segmentation"}, "choose one of: classification, detection"),
])
def test_invalid_values_name_the_key_and_allowed_values(raw, message):
    with pytest.raises(HyperparameterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve(raw, "classification")


def test_augmentation_type_choices_per_task():
    assert resolve({}, "detection").augmentation_type == "ssd"
    assert resolve({}, "classification").augmentation_type == ""
    assert resolve({"augmentation_type": "none"}, "detection").augmentation_type == "none"
    with pytest.raises(HyperparameterError, match="not allowed for detection; choose one of: ssd, color, none"):
        resolve({"augmentation_type": "crop"}, "detection")
    with pytest.raises(HyperparameterError, match="not allowed for classification; choose one of: crop, crop_color"):
        resolve({"augmentation_type": "ssd"}, "classification")


def test_num_layers_200_has_no_gluoncv_model():
    with pytest.raises(HyperparameterError, match="num_layers=200 has no GluonCV ResNet"):
        resolve({"num_layers": "200"}, "classification").network


def test_task_must_match_the_data():
    with pytest.raises(HyperparameterError, match="train channel holds classification"):
        resolve({"task": "detection"}, "classification")
