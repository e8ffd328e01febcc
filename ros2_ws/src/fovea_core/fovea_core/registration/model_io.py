"""Loading the trained VBReg network: state dict (``weights_only=True``) + JSON config, or its ONNX export,
behind the project's InferenceBackend so the pipeline never cares which runtime scores correspondences.

PyTorch and the network module are imported where the torch backend needs them: a node on onnxruntime
starts without importing torch (6 of its 10 s of imports on this loaded machine)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fovea_core.paths import models_dir

if TYPE_CHECKING:
    from .network import VBRegNetwork

DEFAULT_MODEL_DIR = models_dir() / "registration"
WEIGHTS_NAME = "vbreg.pt"
CONFIG_NAME = "vbreg.json"
ONNX_NAME = "vbreg.onnx"
# of the 12 trained: same recall on the bench's PandaSet pairs; the network takes 0.44x the time at N = 150, a
# pair 0.78x (bench/results/registration.json, notes/issue-10.md)
DEFAULT_ITERATIONS = 6


def save_network(network: VBRegNetwork, directory: str | Path) -> Path:
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), directory / WEIGHTS_NAME)
    (directory / CONFIG_NAME).write_text(json.dumps(network.config.to_dict(), indent=2) + "\n")
    return directory / WEIGHTS_NAME


def load_network(directory: str | Path = DEFAULT_MODEL_DIR, parameter: str | None = None) -> VBRegNetwork:
    """The network in ``directory``; a bad file raises ``ModelFileError`` (one line naming ``parameter``)."""
    from fovea_core.model_files import ModelFileError, check_state_dict, load_json_file, load_torch_file

    from .network import VBRegConfig, VBRegNetwork

    directory = Path(directory)
    try:
        config = VBRegConfig(**load_json_file(directory / CONFIG_NAME, parameter))
    except TypeError as exc:
        raise ModelFileError(directory / CONFIG_NAME, f"is not a VBReg configuration ({exc})", parameter) from None
    network = VBRegNetwork(config)
    state = load_torch_file(directory / WEIGHTS_NAME, parameter)
    check_state_dict(state, network, directory / WEIGHTS_NAME, parameter)
    network.load_state_dict(state)
    return network.eval()


def load_scorer(backend: str = "torch", model_dir: str | Path = DEFAULT_MODEL_DIR, onnx_path: str | Path | None = None,
                threads: int | None = None, parameter: str | None = None, iterations: int | None = None):
    """An object with ``run({"correspondences": (1, N, 6) float32}) -> {"inlier_logits", "features"}``.
    ``threads``: onnxruntime intra-op threads (None = its default); ignored by the other backends.
    ``parameter``: the name a bad model file is reported under (``fovea_core.model_files``).
    ``iterations``: score with the first this many network iterations (None: all the model has). PyTorch
    runs that prefix of the trained network; an ONNX graph holds a fixed number (see ``export``), which
    must match — a mismatch is a ``ModelFileError`` naming ``network_iterations``."""
    from fovea_core.backends import load_backend
    from fovea_core.model_files import ModelFileError

    model_dir = Path(model_dir)
    if backend == "torch":
        from .network import InferenceNetwork

        network = load_network(model_dir, parameter)
        if iterations is not None:
            if not 1 <= iterations <= network.config.num_iterations:
                raise ModelFileError(model_dir / WEIGHTS_NAME, f"the network has {network.config.num_iterations} "
                                     f"iterations, {iterations} were asked for", "network_iterations")
            network = network.prefix(iterations)
        return load_backend(
            "torch",
            torch_module=InferenceNetwork(network),
            input_names=InferenceNetwork.input_names,
            output_names=InferenceNetwork.output_names,
        )
    path = Path(onnx_path) if onnx_path else model_dir / ONNX_NAME
    options = {"intra_op_threads": threads} if backend == "onnxruntime" and threads else {}
    scorer = load_backend(backend, onnx_path=str(path), model_parameter=parameter, **options)
    if iterations is not None and (found := onnx_iterations(path)) != iterations:
        raise ModelFileError(path, f"runs {found} network iterations, network_iterations is {iterations} (export "
                             f"one: python -m fovea_core.registration.export --iterations {iterations})",
                             "network_iterations")
    return scorer


def onnx_iterations(path: str | Path) -> int | None:
    """Network iterations of an exported graph: the fixed middle axis of its ``inlier_logits`` output."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    output = next((o for o in model.graph.output if o.name == "inlier_logits"), None)
    dims = output.type.tensor_type.shape.dim if output is not None else []
    return int(dims[1].dim_value) if len(dims) == 3 and dims[1].dim_value else None


def normalize_correspondences(stacked: np.ndarray, inlier_threshold: float) -> np.ndarray:
    """Centre source and target separately and express them in units of τ: the network's input frame."""
    source = stacked[:, :3] - stacked[:, :3].mean(axis=0)
    target = stacked[:, 3:] - stacked[:, 3:].mean(axis=0)
    return (np.hstack([source, target]) / inlier_threshold).astype(np.float32)
