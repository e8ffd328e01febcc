"""HMNet modules.

Per 5 ms step (see ``HMNet.step``):

1. level 1 (stride 4) always: its cells attend to their own events (Event Sparse Cross Attention), read a
   top-down message from level 2 (window attention), and update with residual conv blocks;
2. level l > 1 only when due (every ``rate_l`` steps): it reads an up-write from level l-1 (strided conv of the
   just-updated faster memory) and a top-down message from level l+1, then updates the same way;
3. the pyramid neck fuses all memories (the slow part of the neck is recomputed only when a slow level
   changed) and the heads predict segmentation logits and depth at full resolution.

``forward_sequence`` runs the same computation over a whole sequence (event embeddings batched over time).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fovea_core.events.hmnet.config import HMNetConfig
from fovea_core.events.hmnet.tokens import num_token_ids


def _groups(c: int) -> int:
    return math.gcd(c, 8)


class ResidualConvBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(c), c)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.gelu(self.conv1(self.norm(x))))


class EventSparseCrossAttention(nn.Module):
    """Each fast-memory cell (query) attends to the embedded events inside it (keys / values)."""

    def __init__(self, dim: int, num_tokens: int, heads: int) -> None:
        super().__init__()
        self.heads, self.dim = heads, dim
        self.embed = nn.Embedding(num_tokens, dim, padding_idx=0)
        self.q_norm = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim))
        self.out = nn.Linear(dim, dim)

    def keys_values(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens (..., N, K) -> keys, values (..., N, K, heads, d) and mask (..., N, K); independent of the memory,
        so a whole sequence can be embedded at once."""
        # keys/values depend only on the token id: project the embedding table once (num_tokens rows) and
        # look rows up, instead of projecting every event slot (cells x K rows) - identical result, fewer FLOPs
        table = self.kv(self.embed.weight)
        k, v = F.embedding(tokens, table).chunk(2, dim=-1)
        shape = k.shape[:-1] + (self.heads, self.dim // self.heads)
        return k.reshape(shape), v.reshape(shape), tokens > 0

    def attend(self, z: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = z.shape
        q = self.q(self.q_norm(z.flatten(2).transpose(1, 2))).reshape(b, h * w, self.heads, c // self.heads)
        logits = torch.einsum("bnhd,bnkhd->bnhk", q, k) / math.sqrt(c // self.heads)
        logits = logits.masked_fill(~mask[:, :, None, :], -1e4)
        out = torch.einsum("bnhk,bnkhd->bnhd", logits.softmax(dim=-1), v).reshape(b, h * w, c)
        has_events = mask.any(dim=-1, keepdim=True).to(out.dtype)  # empty cells receive nothing
        return (self.out(out) * has_events).transpose(1, 2).reshape(b, c, h, w)


class WindowTopDownAttention(nn.Module):
    """Message from a slower (half-resolution) memory: each fast cell attends to the window x window cells of the
    slow level around its parent cell."""

    def __init__(self, dim: int, upper_dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.norm = nn.GroupNorm(_groups(dim), dim)
        self.q = nn.Conv2d(dim, dim, 1)
        self.kv = nn.Conv2d(upper_dim, 2 * dim, 1)
        self.pos_bias = nn.Parameter(torch.zeros(heads, window * window))
        self.out = nn.Conv2d(dim, dim, 1)

    def keys_values(self, upper: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keys / values of the slow level laid out on the fast grid, (b, heads, d, window^2, h, w) each, plus the
        validity of each window slot. They change only when the slow level is updated, so streaming caches them."""
        b, h, w = upper.shape[0], size[0], size[1]
        nh, win2 = self.heads, self.window * self.window
        c = self.kv.out_channels // 2
        kv = F.unfold(self.kv(upper), self.window, padding=self.window // 2)  # (b, 2c*win2, hu*wu)
        hu, wu = upper.shape[-2:]
        kv = F.interpolate(kv.reshape(b, 2 * c * win2, hu, wu), size=(h, w), mode="nearest")
        k, v = kv.reshape(b, 2, nh, c // nh, win2, h, w).unbind(1)
        valid = F.unfold(torch.ones_like(upper[:, :1]), self.window, padding=self.window // 2)
        valid = F.interpolate(valid.reshape(b, win2, hu, wu), size=(h, w), mode="nearest")[:, None]
        # invalid (zero-padded) slots get a large negative bias, folded into the keys' companion tensor
        bias = self.pos_bias[None, :, :, None, None] + (valid < 0.5).to(k.dtype) * -1e4
        return k, v, bias

    def attend(self, z: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, c, h, w = z.shape
        nh = self.heads
        d = c // nh
        q = self.q(self.norm(z)).reshape(b, nh, d, 1, h, w)
        logits = (q * k).sum(2) / math.sqrt(d) + bias
        out = (logits.softmax(dim=2)[:, :, None] * v).sum(3).reshape(b, c, h, w)
        return self.out(out)

    def forward(self, z: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        return self.attend(z, *self.keys_values(upper, z.shape[-2:]))


class MemoryLevel(nn.Module):
    """One latent memory and its update: z <- norm(blocks(z + mix([z, input, top-down message])))."""

    def __init__(self, dim: int, input_dim: int, blocks: int, upper_dim: int | None, heads: int, window: int) -> None:
        super().__init__()
        self.topdown = WindowTopDownAttention(dim, upper_dim, heads, window) if upper_dim else None
        self.mix = nn.Conv2d(dim + input_dim + (dim if upper_dim else 0), dim, 1)
        self.blocks = nn.Sequential(*[ResidualConvBlock(dim) for _ in range(blocks)])
        self.norm = nn.GroupNorm(_groups(dim), dim)  # keeps the recurrent state at a fixed scale

    def forward(self, z: torch.Tensor, x: torch.Tensor, upper: torch.Tensor | None, topdown_kv=None) -> torch.Tensor:
        """``topdown_kv``: cached ``self.topdown.keys_values(upper)``; when given, ``upper`` is not read."""
        parts = [z, x]
        if self.topdown is not None:
            kv = topdown_kv if topdown_kv is not None else self.topdown.keys_values(upper, z.shape[-2:])
            parts.append(self.topdown.attend(z, *kv))
        return self.norm(self.blocks(z + self.mix(torch.cat(parts, dim=1))))


class PyramidNeckHeads(nn.Module):
    """FPN-style top-down fusion of the memories, then segmentation and depth heads at stride 4, upsampled."""

    def __init__(self, cfg: HMNetConfig) -> None:
        super().__init__()
        cn = cfg.neck_channels
        self.lateral = nn.ModuleList([nn.Conv2d(c, cn, 1) for c in cfg.channels])
        self.fuse = nn.Sequential(nn.Conv2d(cn, cn, 3, padding=1), nn.GELU(), ResidualConvBlock(cn))
        self.seg = nn.Conv2d(cn, cfg.num_classes, 1)
        self.depth = nn.Conv2d(cn, 1, 1)
        self.log_depth_offset = math.log(5.0)
        self.log_depth_range = (math.log(cfg.min_depth_m), math.log(cfg.max_depth_m))
        self.out_size = (cfg.height, cfg.width)

    def slow_features(self, states: list[torch.Tensor]) -> torch.Tensor | None:
        """Fusion of levels 2.. at stride 8 (changes only when one of them is updated)."""
        feat = None
        for lateral, z in reversed(list(zip(self.lateral[1:], states[1:]))):
            lat = lateral(z)
            feat = lat if feat is None else lat + F.interpolate(feat, size=lat.shape[-2:], mode="nearest")
        return feat

    def heads(self, z_fast: torch.Tensor, slow: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.lateral[0](z_fast)
        if slow is not None:
            feat = feat + F.interpolate(slow, size=feat.shape[-2:], mode="nearest")
        feat = self.fuse(feat)
        # both heads as one 1x1 conv and one upsampling (both are per-channel linear: same result, fewer ops)
        weight = torch.cat([self.seg.weight, self.depth.weight])
        bias = torch.cat([self.seg.bias, self.depth.bias])
        out = F.interpolate(F.conv2d(feat, weight, bias), size=self.out_size, mode="bilinear", align_corners=False)
        seg, log_depth = out[:, :-1], out[:, -1:]
        log_depth = (log_depth + self.log_depth_offset).clamp(*self.log_depth_range)
        return seg, log_depth.exp()


class HMNet(nn.Module):
    def __init__(self, cfg: HMNetConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        c = cfg.channels
        self.esca = EventSparseCrossAttention(c[0], num_token_ids(cfg.strides[0], cfg.time_bins), cfg.heads)
        self.up_writes = nn.ModuleList([nn.Conv2d(c[i - 1], c[i], 3, stride=2, padding=1) for i in range(1, cfg.levels)])
        self.levels = nn.ModuleList([
            MemoryLevel(c[i], c[i], cfg.blocks[i], c[i + 1] if i + 1 < cfg.levels else None,
                        cfg.heads, cfg.topdown_window) for i in range(cfg.levels)])
        self.neck = PyramidNeckHeads(cfg)

    # --- schedule -------------------------------------------------------------------------------------------
    def due(self, step: int) -> list[bool]:
        """Which levels update at 0-based step ``step``: level l after every ``rate_l`` windows."""
        return [step % r == r - 1 for r in self.cfg.rates]

    def init_state(self, batch: int, device=None) -> list[torch.Tensor]:
        cfg = self.cfg
        return [torch.zeros(batch, ch, cfg.height // s, cfg.width // s, device=device)
                for ch, s in zip(cfg.channels, cfg.strides)]

    # --- pieces used by the step, the sequence forward, streaming and ONNX export ---------------------------
    def update_fast(self, states: list[torch.Tensor], k, v, mask, topdown_kv=None) -> torch.Tensor:
        x = self.esca.attend(states[0], k, v, mask)
        return self.levels[0](states[0], x, states[1] if self.cfg.levels > 1 else None, topdown_kv)


    def update_level(self, i: int, states: list[torch.Tensor], topdown_kv=None) -> torch.Tensor:
        x = self.up_writes[i - 1](states[i - 1])
        return self.levels[i](states[i], x, states[i + 1] if i + 1 < self.cfg.levels else None, topdown_kv)

    def topdown_kv(self, i: int, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keys / values of level i+1 for level i's top-down attention (valid until level i+1 changes)."""
        size = (self.cfg.height // self.cfg.strides[i], self.cfg.width // self.cfg.strides[i])
        return self.levels[i].topdown.keys_values(upper, size)

    def step(self, states: list[torch.Tensor], tokens: torch.Tensor, step: int, slow: torch.Tensor | None = None,
             slow_valid: bool = False):
        """One 5 ms step. Returns (new states, seg logits, depth, slow features cache)."""
        k, v, mask = self.esca.keys_values(tokens)
        return self._step_kv(states, k, v, mask, step, slow, slow_valid)

    def _step_kv(self, states, k, v, mask, step, slow, slow_valid):
        states = list(states)
        states[0] = self.update_fast(states, k, v, mask)
        due = self.due(step)
        for i in range(1, self.cfg.levels):
            if due[i]:
                states[i] = self.update_level(i, states)
        if self.cfg.levels > 1 and (any(due[1:]) or not slow_valid):
            slow = self.neck.slow_features(states)
        seg, depth = self.neck.heads(states[0], slow)
        return states, seg, depth, slow

    def forward_sequence(self, tokens: torch.Tensor, states=None, start_step: int = 0):
        """tokens (T, B, N, K) -> seg logits (T, B, C, H, W), depth (T, B, 1, H, W), final states.

        Event embeddings for all T windows are computed in one batch; the recurrence then runs step by step,
        recomputing the whole neck every step (no caching), which the streaming path must reproduce."""
        steps, batch = tokens.shape[:2]
        states = states if states is not None else self.init_state(batch, tokens.device)
        k, v, mask = self.esca.keys_values(tokens)
        segs, depths = [], []
        for s in range(steps):
            states, seg, depth, _ = self._step_kv(states, k[s], v[s], mask[s], start_step + s, None, False)
            segs.append(seg)
            depths.append(depth)
        return torch.stack(segs), torch.stack(depths), states


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
