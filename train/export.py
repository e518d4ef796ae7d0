"""Writing the trained network as a model directory (the contract is `magiccards/model_dir.py`)."""
from __future__ import annotations

from pathlib import Path

import mxnet as mx

from magiccards import model_dir as contract


def sample_input(net: mx.gluon.HybridBlock, image_shape: tuple[int, int, int]) -> mx.nd.NDArray:
    """A zero batch of one image on the network's own context and in its own dtype."""
    params = list(net.collect_params().values())
    ctx = params[0].list_ctx()[0] if params else mx.cpu()
    dtype = params[0].dtype if params else "float32"
    _, h, w = image_shape
    return mx.nd.zeros((1, 3, h, w), ctx=ctx, dtype=dtype)


def write_graph(net: mx.gluon.HybridBlock, folder: Path, task: str, image_shape: tuple[int, int, int],
                epoch: int = 0, hybridize: bool = True) -> Path:
    """`<prefix>-symbol.json` and `<prefix>-NNNN.params` of the inference graph; returns the symbol file.

    `hybridize=False` keeps the network's own hybridization (a periodic export during training)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if hybridize:
        net.hybridize()
    net(sample_input(net, image_shape))
    net.export(str(folder / contract.PREFIX[task]), epoch=epoch)
    return folder / contract.symbol_name(task)


def export(net: mx.gluon.HybridBlock, model_dir: Path, *, task: str, network: str, classes: list[str],
           image_shape: tuple[int, int, int], hyperparameters: dict[str, str], metrics: dict,
           dataset_sizes: dict) -> Path:
    """Write the whole model directory; returns the symbol file's path."""
    symbol = write_graph(net, model_dir, task, image_shape)
    contract.write_metadata(model_dir, task=task, network=network, classes=classes, input_shape=image_shape,
                            hyperparameters=hyperparameters, metrics=metrics, dataset_sizes=dataset_sizes,
                            framework={"mxnet": mx.__version__})
    net.save_parameters(str(Path(model_dir) / contract.TRAINING_STATE))
    return symbol
