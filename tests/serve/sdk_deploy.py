"""Run by tests/serve/test_docker_serve.py in the SageMaker SDK's own venv: Model(...).deploy(1, "local")
and predictor.predict(jpeg bytes), exactly as a user's notebook would; prints the answer as JSON."""
import json
import os
import sys

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
from sagemaker.deserializers import JSONDeserializer  # noqa: E402
from sagemaker.local import LocalSession  # noqa: E402
from sagemaker.model import Model  # noqa: E402
from sagemaker.predictor import Predictor  # noqa: E402
from sagemaker.serializers import IdentitySerializer  # noqa: E402

image, model_tar, picture = sys.argv[1:4]
session = LocalSession()
session.config = {"local": {"local_code": True}}
model = Model(image_uri=image, model_data=f"file://{model_tar}", role="arn:aws:iam::111111111111:role/local",
              sagemaker_session=session, predictor_cls=Predictor)
predictor = model.deploy(initial_instance_count=1, instance_type="local")
try:
    predictor.serializer = IdentitySerializer("image/jpeg")
    predictor.deserializer = JSONDeserializer()
    with open(picture, "rb") as f:
        answer = predictor.predict(f.read())
    print("ANSWER", json.dumps(answer))
finally:
    predictor.delete_endpoint()
