"""The autoregressive model of normal streams: a causal transformer over the sequence of per-step
distributions that predicts the next step's distribution (AVAD: Linear(31 -> 256), 2 layers, 16 heads,
50-step sequences; here CPU-sized: 64 wide, 2 layers, 4 heads, the same 50-step context).

Inputs are log-probabilities (floored at 1e-4), so sharp and flat distributions are far apart in input space.
Output t is the predicted distribution of step t + 1 (log-softmax).
"""
from __future__ import annotations

import torch
from torch import nn

LOG_FLOOR = 1e-4


class CausalTransformerAR(nn.Module):
    def __init__(self, dim: int = 31, width: int = 64, layers: int = 2, heads: int = 4, context: int = 50,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.dim, self.context = int(dim), int(context)
        self.embed = nn.Linear(dim, width)
        self.position = nn.Parameter(torch.zeros(context, width))
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)
        mask = torch.triu(torch.full((context, context), float("-inf")), diagonal=1)
        self.register_buffer("causal_mask", mask, persistent=False)

    def forward(self, dists: torch.Tensor) -> torch.Tensor:
        """dists (B, T, dim) probabilities, T <= context -> (B, T, dim) log-probabilities of steps 1..T."""
        t = dists.shape[1]
        x = self.embed(torch.log(dists.clamp_min(LOG_FLOOR))) + self.position[:t]
        h = self.encoder(x, mask=self.causal_mask[:t, :t], is_causal=True)
        return torch.log_softmax(self.out(self.norm(h)), dim=-1)


class NextStepPredictor(nn.Module):
    """The model's prediction of the step after one full context window, (B, context, dim) -> (B, dim)
    log-probabilities: what the detector asks for at every step once the context is full.

    The same weights as :class:`CausalTransformerAR` and the same result as ``model(window)[:, -1]``, computed
    for that one output only: the last layer's attention, feed-forward block and the output head run for the
    last position alone (it sees every position, so it needs no mask), and the window length is fixed, so an
    exported graph has no shape arithmetic left. On one CPU thread with ONNX Runtime this is about half the
    cost of the full window (bench/event_anomaly.py)."""

    def __init__(self, model: CausalTransformerAR) -> None:
        super().__init__()
        self.model = model
        self.context = model.context

    def forward(self, dists: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.embed(torch.log(dists.clamp_min(LOG_FLOOR))) + m.position
        *first, last = m.encoder.layers
        for layer in first:
            x = layer(x, src_mask=m.causal_mask)
        h = last.norm1(x)
        attended = last.self_attn(h[:, -1:], h, h, need_weights=False)[0]
        y = x[:, -1:] + last.dropout1(attended)
        y = y + last.dropout2(last.linear2(last.dropout(last.activation(last.linear1(last.norm2(y))))))
        return torch.log_softmax(m.out(m.norm(y[:, 0])), dim=-1)


def next_step_kl(model: CausalTransformerAR, dists: torch.Tensor) -> torch.Tensor:
    """(B, T-1) KL(observed step t+1 || predicted from steps <= t), AVAD's per-step score."""
    logp = model(dists[:, :-1])
    target = dists[:, 1:].clamp_min(LOG_FLOOR)
    target = target / target.sum(-1, keepdim=True)
    return (target * (torch.log(target) - logp)).sum(-1)


def ar_loss(model: CausalTransformerAR, dists: torch.Tensor):
    kl = next_step_kl(model, dists)
    return kl.mean(), {"kl": kl.detach().mean()}
