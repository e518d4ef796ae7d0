"""Run by tests/container/test_sdk_local_mode.py in the SageMaker SDK's own venv: Estimator(instance_type='local').fit."""
import os
import sys

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
from sagemaker.estimator import Estimator  # noqa: E402
from sagemaker.local import LocalSession  # noqa: E402

image, train, validation, output = sys.argv[1:5]
session = LocalSession()
session.config = {"local": {"local_code": True}}
estimator = Estimator(image_uri=image, role="arn:aws:iam::111111111111:role/local", instance_count=1,
                      instance_type="local", sagemaker_session=session, output_path=f"file://{output}",
                      hyperparameters={"network": "resnet18_v1b", "image_shape": "3,32,32", "epochs": 2,
                                       "mini_batch_size": 16, "optimizer": "adam", "learning_rate": 0.002})
estimator.fit({"train": f"file://{train}", "validation": f"file://{validation}"})
print("MODEL_DATA", estimator.model_data)
