"""VBReg network: shapes, ELBO terms, determinism of the test-time path."""
import torch
from torch.distributions import Normal, kl_divergence

from fovea_core.registration.network import (
    VBRegConfig, VBRegNetwork, balanced_log_likelihood, compatibility_weighted_attention, elbo_terms, gaussian_kl,
)
from fovea_core.registration.compatibility import spatial_compatibility_torch

SMALL = VBRegConfig(num_iterations=3, feature_dim=16, hidden_dim=24, latent_dim=8)


def make_inputs(batch=2, count=20, seed=0):
    generator = torch.Generator().manual_seed(seed)
    corr = torch.randn(batch, count, 6, generator=generator) * 3
    labels = (torch.rand(batch, count, generator=generator) < 0.3).float()
    return corr, labels


def test_paper_sized_network_output_shapes():
    torch.manual_seed(0)
    network = VBRegNetwork(VBRegConfig())  # L=12, 128-d, hidden 256, latent 128
    corr, labels = make_inputs(batch=1, count=32)
    logits, features, kl = network(corr, labels)
    assert logits.shape == (1, 12, 32)
    assert features.shape == (1, 32, 128)
    assert kl.shape == (1, 12, 32)
    assert network.layers[0].roles["query"].gru.hidden_gates.in_features == 256
    assert network.layers[0].roles["key"].prior.mlp[-1].out_features == 2 * 128


def test_inference_path_is_deterministic_and_unit_norm():
    torch.manual_seed(0)
    network = VBRegNetwork(SMALL).eval()
    corr, _ = make_inputs()
    first_logits, first_features = network(corr)
    second_logits, _ = network(corr)
    assert torch.equal(first_logits, second_logits)
    assert torch.allclose(first_features.norm(dim=-1), torch.ones(2, 20), atol=1e-4)


def test_gaussian_kl_matches_torch_distributions():
    generator = torch.Generator().manual_seed(1)
    mq, lq, mp, lp = (torch.randn(5, 8, generator=generator) for _ in range(4))
    expected = kl_divergence(Normal(mq, (0.5 * lq).exp()), Normal(mp, (0.5 * lp).exp())).sum(-1)
    assert torch.allclose(gaussian_kl(mq, lq, mp, lp), expected, atol=1e-5)
    assert torch.allclose(gaussian_kl(mq, lq, mq, lq), torch.zeros(5), atol=1e-6)


def test_elbo_is_likelihood_minus_kl():
    torch.manual_seed(0)
    network = VBRegNetwork(SMALL)
    corr, labels = make_inputs()
    torch.manual_seed(5)
    terms = elbo_terms(network, corr, labels, kl_weight=0.5, prior_path_weight=0.0)
    assert terms.kl.item() >= 0.0
    assert terms.log_likelihood.item() < 0.0
    assert torch.allclose(terms.loss, -terms.log_likelihood + 0.5 * terms.kl)
    terms.loss.backward()
    posterior = network.layers[0].roles["value"].posterior.mlp[0].weight
    assert posterior.grad is not None and posterior.grad.abs().sum() > 0  # the KL reaches the posterior


def test_balanced_likelihood_weights_classes_equally():
    labels = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    confident_right = torch.tensor([[[5.0, -5.0, -5.0, -5.0]]])
    all_outlier = torch.tensor([[[-5.0, -5.0, -5.0, -5.0]]])
    # calling everything an outlier must not look good just because outliers are the majority
    assert balanced_log_likelihood(confident_right, labels) > balanced_log_likelihood(all_outlier, labels) + 1.0


def test_incompatible_pairs_get_zero_attention():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(1, 6, 6, generator=generator)
    compatibility = (torch.rand(1, 6, 6, generator=generator) > 0.5).float()
    attention = compatibility_weighted_attention(scores, compatibility)
    assert torch.all(attention[compatibility == 0] == 0)
    assert torch.allclose(attention, compatibility * torch.softmax(scores, dim=-1))


def test_compatibility_is_length_consistency():
    # two correspondences related by one rigid motion are fully compatible, a distorted one is not
    source = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 2, 0]])
    target = source @ torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]).T + 3.0
    target[2] += torch.tensor([0.0, 0.0, 5.0])
    beta = spatial_compatibility_torch(torch.cat([source, target], dim=-1)[None])[0]
    assert torch.isclose(beta[0, 1], torch.tensor(1.0), atol=1e-5)
    assert beta[0, 2] == 0 and beta[1, 2] == 0
