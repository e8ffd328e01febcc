"""Loading the trained VBReg network: state dict (``weights_only=True``) + JSON config, or its ONNX export,
behind the project's InferenceBackend so the pipeline never cares which runtime scores correspondences."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from fovea_core.paths import models_dir

from .network import InferenceNetwork, VBRegConfig, VBRegNetwork

DEFAULT_MODEL_DIR = models_dir() / "registration"
WEIGHTS_NAME = "vbreg.pt"
CONFIG_NAME = "vbreg.json"
ONNX_NAME = "vbreg.onnx"


def save_network(network: VBRegNetwork, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), directory / WEIGHTS_NAME)
    (directory / CONFIG_NAME).write_text(json.dumps(network.config.to_dict(), indent=2) + "\n")
    return directory / WEIGHTS_NAME


def load_network(directory: str | Path = DEFAULT_MODEL_DIR, parameter: str | None = None) -> VBRegNetwork:
    """The network in ``directory``; a bad file raises ``ModelFileError`` (one line naming ``parameter``)."""
    from fovea_core.model_files import ModelFileError, check_state_dict, load_json_file, load_torch_file

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
                threads: int | None = None, parameter: str | None = None):
    """An object with ``run({"correspondences": (1, N, 6) float32}) -> {"inlier_logits", "features"}``.
    ``threads``: onnxruntime intra-op threads (None = its default); ignored by the other backends.
    ``parameter``: the name a bad model file is reported under (``fovea_core.model_files``)."""
    from fovea_core.backends import load_backend

    model_dir = Path(model_dir)
    if backend == "torch":
        return load_backend(
            "torch",
            torch_module=InferenceNetwork(load_network(model_dir, parameter)),
            input_names=InferenceNetwork.input_names,
            output_names=InferenceNetwork.output_names,
        )
    path = Path(onnx_path) if onnx_path else model_dir / ONNX_NAME
    options = {"intra_op_threads": threads} if backend == "onnxruntime" and threads else {}
    return load_backend(backend, onnx_path=str(path), model_parameter=parameter, **options)


def normalize_correspondences(stacked: np.ndarray, inlier_threshold: float) -> np.ndarray:
    """Centre source and target separately and express them in units of τ: the network's input frame."""
    source = stacked[:, :3] - stacked[:, :3].mean(axis=0)
    target = stacked[:, 3:] - stacked[:, 3:].mean(axis=0)
    return (np.hstack([source, target]) / inlier_threshold).astype(np.float32)
