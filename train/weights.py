"""Where a job's ImageNet weights come from, in this order (use_pretrained_model=1):

1. the job's `pretrained` channel (GluonCV model-store files: `<name>-<hash>.params` or `<name>.params`);
2. the weights baked into the image (`magiccards image --weights ...` puts them in IMAGE_STORE);
3. the job's GluonCV model store ($MXNET_HOME/models, default ~/.mxnet/models);
4. GluonCV's download into that store, from MXNET_GLUON_REPO (default: Apache's S3 bucket), checksum
   verified; a SageMaker job without network isolation can download.

Offline and without weights, the error names every place looked at. `download` is also what
`magiccards weights NAME --out DIR` uses to fill a folder that can be a `pretrained` channel.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from magiccards.errors import UserError

IMAGE_STORE = Path(os.environ.get("MAGICCARDS_IMAGE_WEIGHTS", "/opt/magiccards/weights"))
DEFAULT_REPO = "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/"


class WeightsError(UserError):
    """Pretrained weights cannot be found or fetched."""


def gluon_store() -> Path:
    """GluonCV's model store of this process ($MXNET_HOME/models, default ~/.mxnet/models)."""
    return Path(os.environ.get("MXNET_HOME", Path.home() / ".mxnet")).expanduser() / "models"


def repository() -> str:
    return os.environ.get("MXNET_GLUON_REPO", DEFAULT_REPO)


def file_names(name: str) -> list[str]:
    """The names GluonCV's model store gives `name`'s weights (`<name>-<sha1 prefix>.params`), then `<name>.params`."""
    from gluoncv.model_zoo.model_store import short_hash

    try:
        return [f"{name}-{short_hash(name)}.params", f"{name}.params"]
    except ValueError:
        return [f"{name}.params"]


def in_folder(name: str, folder: Path | None) -> Path | None:
    """`name`'s weights in `folder` (no download), or None."""
    if folder is None:
        return None
    for candidate in file_names(name):
        if (Path(folder) / candidate).is_file():
            return Path(folder) / candidate
    return None


@contextlib.contextmanager
def _store_at(folder: Path):
    """GluonCV's get_model_file writes into $MXNET_HOME/models whatever root it is given: point it at `folder`."""
    saved = os.environ.pop("MXNET_HOME", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["MXNET_HOME"] = saved


def download(name: str, into: Path) -> Path:
    """GluonCV's weights for `name` from MXNET_GLUON_REPO into `into` (tqdm progress bar, SHA-1 checked).

    A checksum mismatch leaves no file behind; every failure is a WeightsError naming the repository."""
    import requests
    from gluoncv.model_zoo import model_store

    if name not in model_store._model_sha1:
        known = ", ".join(sorted(n for n in model_store._model_sha1 if n.split("_")[0] in name.split("_")[0])[:8])
        raise WeightsError(f"GluonCV publishes no pretrained weights for {name!r}" + (f" (similar: {known})" if known
                                                                                      else ""))
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    repo = repository()
    try:
        with _store_at(into):
            return Path(model_store.get_model_file(name, root=str(into)))
    except ValueError:
        for leftover in into.glob(f"{name}-*.params"):
            leftover.unlink()
        raise WeightsError(f"the weights of {name} downloaded from {repo} do not match GluonCV's SHA-1 checksum: "
                           "refused (a wrong or damaged mirror?)") from None
    except (RuntimeError, requests.RequestException, OSError) as e:
        for leftover in into.glob(f"{name}-*.zip"):
            leftover.unlink()
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        if isinstance(e, requests.ConnectionError):
            reason = "the repository cannot be reached: " + ("its host name does not resolve" if "NameResolution"
                                                             in str(e) else "the connection failed")
        raise WeightsError(f"cannot download the weights of {name} from {repo} ({reason})") from None
    finally:
        for lock in into.glob(f"{name}-*.lock"):  # GluonCV's lock file
            lock.unlink(missing_ok=True)


def find(name: str, pretrained_channel: Path | None, log=print) -> Path:
    """`name`'s ImageNet weights from the first source that has them (module docstring); logs which."""
    sources = [("the pretrained channel", pretrained_channel), ("the image's weights", IMAGE_STORE),
               ("the job's GluonCV model store", gluon_store())]
    for label, folder in sources:
        found = in_folder(name, folder)
        if found is not None:
            log(f"pretrained: {name} from {label} ({found})")
            return found
    try:
        found = download(name, gluon_store())
    except WeightsError as e:
        looked = "; ".join(f"{label} ({folder})" for label, folder in sources if folder is not None)
        missing = "" if pretrained_channel is not None else "; no pretrained channel"
        raise WeightsError(
            f"use_pretrained_model=1 needs ImageNet weights for {name}, found none in: {looked}{missing}; and {e}. "
            f"Give the job a 'pretrained' channel holding {file_names(name)[0]} (`magiccards weights {name} --out "
            f"DIR` fetches it), bake it into the image (`magiccards image --weights {name}`), or set "
            "use_pretrained_model=0") from None
    log(f"pretrained: {name} downloaded from {repository()} ({found})")
    return found
