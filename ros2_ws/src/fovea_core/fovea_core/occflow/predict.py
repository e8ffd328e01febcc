"""Dense predictions of each method on a sample's grid at given times (what evaluation and the node's
previews use): ImplicitO queried at every cell centre, the dense-grid baseline's time slices, and the
constant-velocity extrapolation of the tracked boxes."""
from __future__ import annotations

import numpy as np
import torch

from .agents import constant_velocity, rasterise
from .config import OccFlowConfig
from .grid import BevGrid
from .inference import QUERY_CHUNK
from .model import DenseGrid, ImplicitO, dense_times
from .sample import Sample, model_inputs


def query_grid(decoder, maps: torch.Tensor, cfg: OccFlowConfig, t: float, chunk: int = QUERY_CHUNK):
    """The implicit decoder at every cell centre at time t: (C, ny, nx) probabilities, (C, 2, ny, nx) flow."""
    grid = BevGrid.of(cfg)
    centres = grid.cell_centres().reshape(-1, 2).astype(np.float32)
    q = torch.from_numpy(np.concatenate([centres, np.full((len(centres), 1), t, np.float32)], 1))[None]
    occ, flow = [], []
    with torch.no_grad():
        for i in range(0, q.shape[1], chunk):
            logits, f = decoder(maps, q[:, i:i + chunk])
            occ.append(torch.sigmoid(logits)[0])
            flow.append(f[0])
    occ = torch.cat(occ).numpy().T.reshape(cfg.num_classes, cfg.ny, cfg.nx)
    flow = torch.cat(flow).numpy().transpose(1, 2, 0).reshape(cfg.num_classes, 2, cfg.ny, cfg.nx)
    return occ, flow


def implicit_predictor(model: ImplicitO):
    def predict(sample: Sample, times) -> list[tuple[np.ndarray, np.ndarray]]:
        cfg = model.cfg
        with torch.no_grad():
            maps = model.features(*model_inputs(sample, cfg))
        return [query_grid(model.decoder, maps, cfg, t) for t in times]
    return predict


def dense_predictor(model: DenseGrid):
    def predict(sample: Sample, times) -> list[tuple[np.ndarray, np.ndarray]]:
        cfg = model.cfg
        slices = {round(v, 6): i for i, v in enumerate(dense_times(cfg))}
        with torch.no_grad():
            occ, flow = model(*model_inputs(sample, cfg))
        occ, flow = torch.sigmoid(occ)[0].numpy(), flow[0].numpy()
        return [(occ[slices[round(t, 6)]], flow[slices[round(t, 6)]]) for t in times]
    return predict


def constant_velocity_predictor(cfg: OccFlowConfig):
    grid = BevGrid.of(cfg)

    def predict(sample: Sample, times) -> list[tuple[np.ndarray, np.ndarray]]:
        cv = constant_velocity(sample.tracks)
        out = []
        for t in times:
            occ, flow, _ = rasterise(cv, grid, t, cfg.flow_dt, cfg.num_classes)
            out.append((occ, flow))
        return out
    return predict
