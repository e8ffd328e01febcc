"""Training objective: BCE on occupancy at sampled space-time queries (all classes), L1 on the reverse
flow (metres) where the query is occupied by an agent whose earlier pose is known. The same queries and
targets train the implicit decoder (at its query points) and the dense baseline (at the cells and time
slices containing them), so the two see the same supervision."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def occupancy_flow_loss(occ_logits, flow, target_occ, target_flow, flow_valid, flow_weight: float):
    """(B, Q, C) logits, (B, Q, C, 2) flow against the targets; returns (loss, scalars)."""
    bce = F.binary_cross_entropy_with_logits(occ_logits, target_occ)
    mask = (target_occ > 0.5) & flow_valid
    if mask.any():
        l1 = (flow - target_flow).abs().sum(-1)[mask].mean()
    else:
        l1 = flow.sum() * 0.0
    return bce + flow_weight * l1, {"bce": bce.detach(), "flow_l1": l1.detach()}


def implicit_loss(model, batch, flow_weight: float):
    logits, flow = model(batch["lidar"], batch["map"], batch["queries"])
    return occupancy_flow_loss(logits, flow, batch["occ"], batch["flow"], batch["flow_valid"], flow_weight)


def dense_loss(model, batch, flow_weight: float):
    occ, flow = model(batch["lidar"], batch["map"])                # (B, T, C, H, W), (B, T, C, 2, H, W)
    s, r, c = batch["slice"][0], batch["row"][0], batch["col"][0]  # (Q,) each; batch size 1
    logits = occ[0][s, :, r, c][None]                               # (1, Q, C)
    flow_q = flow[0].permute(0, 3, 4, 1, 2)[s, r, c][None]          # (1, Q, C, 2)
    return occupancy_flow_loss(logits, flow_q, batch["occ"], batch["flow"], batch["flow_valid"], flow_weight)
