"""What the ROS node runs: ImplicitO through any Fovea backend, on plain arrays.

``encode`` (once per sweep): motion-compensated sweeps (oldest first, None for a missing one), an
optional map raster and tracked-object history -> the decoder maps. ``query`` (per service call, any
number of points): (x, y, t) in base_link of that sweep, t seconds after it -> occupancy probability per
class and reverse flow per class (metres over ``flow_dt``). ``decode`` is the same before the sigmoid
(what the bench times). Queries run in chunks of ``QUERY_CHUNK``: beyond that the decoder's
intermediates leave the cache and the cost per query grows (100k queries in one call cost 1.3-2x the
chunked run here).
The configuration travels with the model: ONNX metadata ``occflow_config`` or the checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .config import OccFlowConfig
from .export import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS, ONNX_CONFIG_KEY
from .grid import BevGrid, lidar_planes, sweep_history
from .vector_map import MAP_CHANNELS

QUERY_CHUNK = 16384


def onnx_config(path: str | Path, parameter: str | None = None) -> OccFlowConfig:
    from fovea_core.model_files import ModelFileError, load_onnx_file

    model = load_onnx_file(path, parameter)
    meta = {p.key: p.value for p in model.metadata_props}
    if ONNX_CONFIG_KEY not in meta:
        raise ModelFileError(path, f"has no '{ONNX_CONFIG_KEY}' metadata (export it with fovea_core.occflow.export)",
                             parameter)
    return OccFlowConfig.from_dict(json.loads(meta[ONNX_CONFIG_KEY]))


class OccFlowInference:
    def __init__(self, encoder, decoder, cfg: OccFlowConfig) -> None:
        self.encoder, self.decoder, self.cfg = encoder, decoder, cfg
        self.grid = BevGrid.of(cfg)

    @classmethod
    def load(cls, backend: str, encoder_path=None, decoder_path=None, checkpoint_path=None, threads: int = 1,
             parameters: tuple[str, str, str] = ("encoder_path", "decoder_path", "checkpoint_path")) -> "OccFlowInference":
        from fovea_core.backends import load_backend

        if backend == "torch":
            import torch

            from .model import FeatureEncoder
            from .train import load_model

            torch.set_num_threads(threads)
            model, _ = load_model(checkpoint_path, parameters[2])
            enc = load_backend("torch", torch_module=FeatureEncoder(model), input_names=ENCODER_INPUTS,
                               output_names=ENCODER_OUTPUTS)
            dec = load_backend("torch", torch_module=model.decoder, input_names=DECODER_INPUTS,
                               output_names=DECODER_OUTPUTS)
            return cls(enc, dec, model.cfg)
        cfg = onnx_config(encoder_path, parameters[0])
        if onnx_config(decoder_path, parameters[1]).to_dict() != cfg.to_dict():
            raise ValueError(f"parameter '{parameters[1]}': the decoder was exported with another config than the encoder")
        options = {"intra_op_threads": threads} if backend == "onnxruntime" else {}
        enc = load_backend(backend, onnx_path=encoder_path, model_parameter=parameters[0], **options)
        dec = load_backend(backend, onnx_path=decoder_path, model_parameter=parameters[1], **options)
        return cls(enc, dec, cfg)

    def encode(self, sweeps: list[np.ndarray | None], map_raster: np.ndarray | None = None,
               track_footprints: np.ndarray | None = None) -> np.ndarray:
        cfg = self.cfg
        counts, valid = sweep_history(sweeps, self.grid, cfg)
        planes = [lidar_planes(counts, valid)]
        if cfg.track_history:
            if track_footprints is None:
                planes.append(np.zeros((2 * cfg.sweeps, *self.grid.shape), np.float32))
            else:
                planes += [track_footprints.astype(np.float32), np.ones((cfg.sweeps, *self.grid.shape), np.float32)]
        raster = np.zeros((len(MAP_CHANNELS), *self.grid.shape), np.float32) if map_raster is None else map_raster
        out = self.encoder.run({"lidar": np.concatenate(planes)[None], "map": raster[None].astype(np.float32)})
        return out["maps"]

    def decode(self, maps: np.ndarray, xyt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Q, 3) queries -> occupancy logits (Q, C), reverse flow (Q, C, 2) metres."""
        xyt = np.ascontiguousarray(xyt, np.float32)
        parts = [self.decoder.run({"maps": maps, "queries": xyt[None, i:i + QUERY_CHUNK]})
                 for i in range(0, max(len(xyt), 1), QUERY_CHUNK)]
        if len(parts) == 1:
            return parts[0]["occupancy_logits"][0], parts[0]["flow"][0]
        return (np.concatenate([p["occupancy_logits"][0] for p in parts]),
                np.concatenate([p["flow"][0] for p in parts]))

    def query(self, maps: np.ndarray, xyt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Q, 3) queries -> occupancy probability (Q, C), reverse flow (Q, C, 2) metres."""
        logits, flow = self.decode(maps, xyt)
        return 1.0 / (1.0 + np.exp(-logits)), flow
