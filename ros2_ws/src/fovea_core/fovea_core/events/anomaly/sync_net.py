"""The learned sync extractor: a small network scoring each temporal offset, trained self-supervised on normal
data the way AVAD trains its audio-visual sync model (the true alignment against shifted ones: a softmax over
the 2D + 1 offsets and cross-entropy with the unshifted one).

Input per step: the shifted ON/OFF counts and the brightening/darkening of :class:`StepInputs`, pooled onto a
coarser grid (``pool`` x ``pool`` patches of the feature grid; 32 x 24 -> 16 x 12 by default, to stay cheap on
a CPU). Per offset and patch, normalised counts, their deviation from the patch's mean over all offsets (what
is particular to this offset), the frame change and their products go through a shared MLP; the mean over
patches is mapped to one score per offset, and a 1-D convolution across the offsets smooths the scores.
Scale-free by construction (counts and changes are normalised per step), so it transfers across event rates
and sensor sizes.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

NUM_FEATURES = 10


def pool_patches(x: torch.Tensor, grid: tuple[int, int], pool: int) -> torch.Tensor:
    """Sum ``pool`` x ``pool`` blocks of patches: (..., gy*gx) -> (..., (gy/pool)*(gx/pool))."""
    if pool == 1:
        return x
    gx, gy = grid
    lead = x.shape[:-1]
    x = x.reshape(*lead, gy // pool, pool, gx // pool, pool)
    return x.sum(dim=(-3, -1)).reshape(*lead, (gy // pool) * (gx // pool))


def per_patch_features(counts: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """counts (B, O, 2, P), change (B, 2, P) -> (B, O, P, NUM_FEATURES)."""
    scale = counts.mean(dim=(1, 2, 3), keepdim=True) + 1e-3
    c = torch.log1p(counts / scale)  # (B, O, 2, P)
    dev = c - c.mean(dim=1, keepdim=True)
    ch = change / (change.mean(dim=(1, 2), keepdim=True) + 1e-4)  # (B, 2, P)
    ch = torch.log1p(ch).unsqueeze(1).expand(-1, c.shape[1], -1, -1)
    on, off, dev_on, dev_off, pos, neg = c[:, :, 1], c[:, :, 0], dev[:, :, 1], dev[:, :, 0], ch[:, :, 0], ch[:, :, 1]
    return torch.stack([on, off, dev_on, dev_off, pos, neg, on * pos, off * neg, dev_on * pos, dev_off * neg], dim=-1)


class SyncNet(nn.Module):
    def __init__(self, grid: tuple[int, int] = (32, 24), pool: int = 2, hidden: int = 32) -> None:
        super().__init__()
        self.grid, self.pool = tuple(grid), int(pool)
        self.patch_mlp = nn.Sequential(nn.Linear(NUM_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.head = nn.Linear(hidden, 1)
        self.smooth = nn.Conv1d(1, 1, kernel_size=5, padding=2)

    def pool_inputs(self, counts: torch.Tensor, change: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (pool_patches(counts, self.grid, self.pool),
                pool_patches(change, self.grid, self.pool) / (self.pool * self.pool))

    def forward(self, counts: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        """counts (B, O, 2, P), change (B, 2, P) on the feature grid -> scores (B, O)."""
        return self.pooled_scores(*self.pool_inputs(counts, change))

    def pooled_scores(self, counts: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        """The same on inputs already pooled with :meth:`pool_inputs` (training keeps only those)."""
        h = self.patch_mlp(per_patch_features(counts, change)).mean(dim=2)  # (B, O, hidden)
        scores = self.head(h).squeeze(-1)
        return scores + self.smooth(scores.unsqueeze(1)).squeeze(1)


def contrastive_loss(net: SyncNet, counts: torch.Tensor, change: torch.Tensor, true_index: int):
    """Cross-entropy of the true (unshifted) offset among all offsets, and the accuracy of picking it
    (inputs pooled)."""
    scores = net.pooled_scores(counts, change)
    target = torch.full((scores.shape[0],), true_index, dtype=torch.long, device=scores.device)
    loss = nn.functional.cross_entropy(scores, target)
    near = (scores.argmax(dim=1) - true_index).abs() <= 1
    return loss, {"within_one_bin": near.float().mean()}


@torch.no_grad()
def learned_distributions(net: SyncNet, counts: np.ndarray, change: np.ndarray, batch: int = 256,
                          pooled: bool = False, temperature: float = 1.0) -> np.ndarray:
    """(K, O) softmax over offsets of the scores / ``temperature`` for K steps (inputs on the feature grid, or
    ``pooled`` already)."""
    net.eval()
    score = net.pooled_scores if pooled else net
    out = []
    for i in range(0, len(counts), batch):
        scores = score(torch.from_numpy(np.ascontiguousarray(counts[i:i + batch])),
                       torch.from_numpy(np.ascontiguousarray(change[i:i + batch])))
        out.append(torch.softmax(scores / temperature, dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, counts.shape[1] if counts.ndim > 1 else 0), np.float32)
