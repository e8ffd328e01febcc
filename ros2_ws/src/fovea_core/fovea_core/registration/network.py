"""Variational non-local network (VBReg, Jiang et al., CVPR 2023) that scores putative correspondences.

Per iteration l = 1..L, for each of the query / key / value roles:
  h^l   = GRU(F^{l-1}, h^{l-1})                          recurrent hidden state (hidden_dim)
  p(z | h^l) = N(μ_p, σ_p²)                              prior encoder
  q(z | h^l, b) = N(μ_q, σ_q²)                           posterior encoder, b = inlier label (training only)
  e = W [z, h^l]                                         role embedding (feature_dim)
then the non-local update
  A = β ⊙ softmax_j(q_i·k_j / √d),  F^l = LayerNorm(F^{l-1} + MLP(A v)),
and an inlier classifier reads F^l. Training maximises the ELBO Σ_l E_q[log p(b | F^l)] − KL(q‖p); at test
time z is the prior mean, so inference is deterministic and exports to ONNX as a single graph.

Inputs are correspondences (B, N, 6) centred per set and divided by the inlier threshold τ, so β has τ = 1
and one model serves indoor (τ = 0.1 m) and outdoor (τ = 1.2 m) scales.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .compatibility import spatial_compatibility_torch

ROLES = ("query", "key", "value")


@dataclass
class VBRegConfig:
    num_iterations: int = 12  # L in the paper
    feature_dim: int = 128
    hidden_dim: int = 256  # GRU hidden state per role
    latent_dim: int = 128
    input_scale: float = 0.1  # coordinates (in units of τ) are scaled by this before the embedding

    def to_dict(self) -> dict:
        return asdict(self)


class ExplicitGRUCell(nn.Module):
    """GRU cell written with Linear layers (same equations as torch.nn.GRUCell) so ONNX export is plain
    MatMul/Sigmoid/Tanh and works on (B, N, C) tensors without reshaping."""

    def __init__(self, input_dim: int, hidden_dim: int):
        super().__init__()
        self.input_gates = nn.Linear(input_dim, 3 * hidden_dim)
        self.hidden_gates = nn.Linear(hidden_dim, 3 * hidden_dim)

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        input_reset, input_update, input_new = self.input_gates(inputs).chunk(3, dim=-1)
        hidden_reset, hidden_update, hidden_new = self.hidden_gates(hidden).chunk(3, dim=-1)
        reset = torch.sigmoid(input_reset + hidden_reset)
        update = torch.sigmoid(input_update + hidden_update)
        candidate = torch.tanh(input_new + reset * hidden_new)
        return (1.0 - update) * candidate + update * hidden


class GaussianEncoder(nn.Module):
    """Diagonal Gaussian over the latent: returns mean and log-variance (clamped for numerical safety)."""

    def __init__(self, input_dim: int, latent_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(input_dim, latent_dim), nn.ReLU(), nn.Linear(latent_dim, 2 * latent_dim))

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_variance = self.mlp(inputs).chunk(2, dim=-1)
        return mean, torch.clamp(log_variance, -8.0, 8.0)


def gaussian_kl(
    posterior_mean: torch.Tensor, posterior_logvar: torch.Tensor, prior_mean: torch.Tensor, prior_logvar: torch.Tensor
) -> torch.Tensor:
    """KL(N(μq, σq²) ‖ N(μp, σp²)) summed over the latent dimension."""
    kl = 0.5 * (
        prior_logvar
        - posterior_logvar
        + (posterior_logvar.exp() + (posterior_mean - prior_mean) ** 2) / prior_logvar.exp()
        - 1.0
    )
    return kl.sum(dim=-1)


def compatibility_weighted_attention(scores: torch.Tensor, compatibility: torch.Tensor) -> torch.Tensor:
    """Attention weights multiplied by β: A = β ⊙ softmax(scores).

    Geometrically incompatible pairs (β = 0) send no message. The rows are deliberately not renormalised:
    an inlier is compatible with many correspondences and receives a large total weight, an outlier only
    a small one, so the message magnitude itself carries the consensus evidence the classifier needs.
    """
    return compatibility * torch.softmax(scores, dim=-1)


class VariationalRole(nn.Module):
    """One of query / key / value: GRU state, prior and posterior encoders, embedding from [z, h]."""

    def __init__(self, config: VBRegConfig):
        super().__init__()
        self.gru = ExplicitGRUCell(config.feature_dim, config.hidden_dim)
        self.prior = GaussianEncoder(config.hidden_dim, config.latent_dim)
        self.posterior = GaussianEncoder(config.hidden_dim + 1, config.latent_dim)
        self.embed = nn.Linear(config.latent_dim + config.hidden_dim, config.feature_dim)

    def forward(
        self, features: torch.Tensor, hidden: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        hidden = self.gru(features, hidden)
        prior_mean, prior_logvar = self.prior(hidden)
        if labels is None:
            latent, kl = prior_mean, None
        else:
            posterior_mean, posterior_logvar = self.posterior(torch.cat([hidden, labels[..., None]], dim=-1))
            noise = torch.randn_like(posterior_mean)
            latent = posterior_mean + noise * torch.exp(0.5 * posterior_logvar)
            kl = gaussian_kl(posterior_mean, posterior_logvar, prior_mean, prior_logvar)
        return self.embed(torch.cat([latent, hidden], dim=-1)), hidden, kl


class VariationalNonLocalLayer(nn.Module):
    def __init__(self, config: VBRegConfig):
        super().__init__()
        self.roles = nn.ModuleDict({role: VariationalRole(config) for role in ROLES})
        self.message = nn.Sequential(
            nn.Linear(config.feature_dim, config.feature_dim), nn.ReLU(), nn.Linear(config.feature_dim, config.feature_dim)
        )
        self.norm = nn.LayerNorm(config.feature_dim)
        self.scale = 1.0 / math.sqrt(config.feature_dim)

    def forward(self, features, hidden_states, compatibility, labels):
        embeddings, new_hidden, kl_total = {}, {}, None
        for role in ROLES:
            embeddings[role], new_hidden[role], kl = self.roles[role](features, hidden_states[role], labels)
            if kl is not None:
                kl_total = kl if kl_total is None else kl_total + kl
        scores = torch.matmul(embeddings["query"], embeddings["key"].transpose(1, 2)) * self.scale
        attention = compatibility_weighted_attention(scores, compatibility)
        features = self.norm(features + self.message(torch.matmul(attention, embeddings["value"])))
        return features, new_hidden, kl_total


class VBRegNetwork(nn.Module):
    """Returns per-iteration inlier logits (B, L, N), unit-norm final features (B, N, D) and, when labels are
    given (training), the per-iteration KL (B, L, N)."""

    def __init__(self, config: VBRegConfig | None = None):
        super().__init__()
        self.config = config or VBRegConfig()
        dim = self.config.feature_dim
        self.embed = nn.Sequential(nn.Linear(6, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.layers = nn.ModuleList(VariationalNonLocalLayer(self.config) for _ in range(self.config.num_iterations))
        self.classifier = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))

    def prefix(self, iterations: int) -> "VBRegNetwork":
        """The same network stopped after its first ``iterations`` iterations (weights shared). The
        classifier reads every iteration and the ELBO trains each one, so a prefix is a complete scorer; on
        PandaSet pairs the first 6 of 12 kept recall and RE/TE at 0.44x the network time (N = 150)
        (bench/registration.py)."""
        if not 1 <= iterations <= len(self.layers):
            raise ValueError(f"iterations must be in 1..{len(self.layers)}, got {iterations}")
        shorter = VBRegNetwork(VBRegConfig(**{**self.config.to_dict(), "num_iterations": iterations}))
        shorter.embed, shorter.classifier = self.embed, self.classifier
        shorter.layers = nn.ModuleList(list(self.layers)[:iterations])
        return shorter.train(self.training)

    def forward(self, correspondences: torch.Tensor, labels: torch.Tensor | None = None):
        if not torch.jit.is_tracing() and (correspondences.dim() != 3 or correspondences.shape[-1] != 6):
            raise ValueError(f"correspondences must be (B, N, 6), got {tuple(correspondences.shape)}")
        compatibility = spatial_compatibility_torch(correspondences)
        features = self.embed(correspondences * self.config.input_scale)
        batch, count = correspondences.shape[:2]
        hidden_states = {role: features.new_zeros(batch, count, self.config.hidden_dim) for role in ROLES}
        logits, kls = [], []
        for layer in self.layers:
            features, hidden_states, kl = layer(features, hidden_states, compatibility, labels)
            logits.append(self.classifier(features).squeeze(-1))
            if kl is not None:
                kls.append(kl)
        normalized = features / (features.norm(dim=-1, keepdim=True) + 1e-6)
        all_logits = torch.stack(logits, dim=1)
        if labels is None:
            return all_logits, normalized
        return all_logits, normalized, torch.stack(kls, dim=1)


class InferenceNetwork(nn.Module):
    """Deterministic test-time graph (prior means) with the backend contract: positional input
    ``correspondences``, outputs ``(inlier_logits, features)``."""

    input_names = ["correspondences"]
    output_names = ["inlier_logits", "features"]

    def __init__(self, network: VBRegNetwork):
        super().__init__()
        self.network = network

    def forward(self, correspondences: torch.Tensor):
        return self.network(correspondences)


@dataclass
class ElboTerms:
    loss: torch.Tensor  # what the optimiser minimises: −ELBO per correspondence (+ prior-path term)
    log_likelihood: torch.Tensor  # E_q[log p(b | F)] summed over iterations, per correspondence
    kl: torch.Tensor  # Σ_l KL(q_l ‖ p_l) per correspondence
    prior_log_likelihood: torch.Tensor  # log p(b | F) with z from the prior mean (the test-time path)


def balanced_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Bernoulli log-likelihood of the labels, mean over correspondences with inliers and outliers weighted
    equally — at 95 % outliers an unweighted likelihood is maximised by calling everything an outlier."""
    labels = labels[:, None, :].expand_as(logits)
    log_p = -nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    positives = labels.sum(-1, keepdim=True).clamp(min=1.0)
    negatives = (1.0 - labels).sum(-1, keepdim=True).clamp(min=1.0)
    weights = 0.5 * (labels / positives + (1.0 - labels) / negatives) * labels.shape[-1]
    return (weights * log_p).mean(dim=-1)  # (B, L)


def elbo_terms(
    network: VBRegNetwork,
    correspondences: torch.Tensor,
    labels: torch.Tensor,
    kl_weight: float = 1.0,
    prior_path_weight: float = 0.0,
) -> ElboTerms:
    """Negative ELBO: −Σ_l E_q[log p(b|F^l)] + kl_weight · Σ_l KL(q_l‖p_l), per correspondence and batch-mean.

    ``prior_path_weight`` optionally adds the likelihood of a second pass with z from the prior mean (the
    deterministic test-time path); it shortens the time until the prior alone classifies well on a small
    CPU budget. With 0 the objective is the paper's ELBO.
    """
    logits, _, kl = network(correspondences, labels)
    log_likelihood = balanced_log_likelihood(logits, labels).sum(dim=1).mean()
    kl_per_correspondence = kl.sum(dim=1).mean()
    loss = -log_likelihood + kl_weight * kl_per_correspondence
    prior_log_likelihood = torch.zeros((), dtype=logits.dtype)
    if prior_path_weight > 0:
        prior_logits, _ = network(correspondences)
        prior_log_likelihood = balanced_log_likelihood(prior_logits, labels).sum(dim=1).mean()
        loss = loss - prior_path_weight * prior_log_likelihood
    return ElboTerms(loss, log_likelihood, kl_per_correspondence, prior_log_likelihood)
