"""The local base image runs Python 3.11 and trusts the host's CA bundle (needs a Docker engine)."""
import pytest
from magiccards.container import base_image

pytestmark = pytest.mark.docker


def test_base_image_runs_python_and_trusts_host_cas(docker_client):
    assert base_image.exists(base_image.DEFAULT_TAG, docker_client), "run `make base-image` first"
    out = docker_client.containers.run(
        base_image.DEFAULT_TAG,
        ["python3", "-c", "import sys, ssl, hashlib; print(sys.version_info[:2]); "
         "print(hashlib.sha1(open('/etc/ssl/certs/ca-certificates.crt','rb').read()).hexdigest())"],
        remove=True).decode().split("\n")
    assert out[0] == "(3, 11)"
    import hashlib
    assert out[1] == hashlib.sha1(base_image.HOST_CA_BUNDLE.read_bytes()).hexdigest()
