"""HMNet: multi-rate schedule, streaming == batched forward, ONNX step graphs == torch, HMNet-1 and baseline."""
import numpy as np
import pytest
import torch

from fovea_core.events.arrays import make_events
from fovea_core.events.hmnet.config import HMNetConfig, single_memory, single_rate_baseline
from fovea_core.events.hmnet.model import HMNet, MemoryLevel, count_parameters
from fovea_core.events.hmnet.streaming import StreamingHMNet, export_step_graphs
from fovea_core.events.hmnet.tokens import sequence_tokens, window_tokens

torch.set_num_threads(1)  # CI machines are shared; the tiny model does not benefit from more

TINY = HMNetConfig(width=32, height=32, channels=(8, 16, 16), blocks=(1, 1, 1), neck_channels=8, max_events_per_cell=6,
                   heads=2)


def _random_tokens(cfg, steps, seed=0):
    g = np.random.default_rng(seed)
    cells = (cfg.height // cfg.strides[0]) * (cfg.width // cfg.strides[0])
    tok = g.integers(1, 1 + cfg.time_bins * 2 * cfg.strides[0] ** 2, (steps, cells, cfg.max_events_per_cell))
    tok[g.random(tok.shape) < 0.6] = 0  # many empty slots and empty cells
    return tok


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    return HMNet(cfg).eval()


def test_each_level_runs_exactly_at_its_rate():
    model = _model(TINY)
    calls = {i: [] for i in range(3)}
    step = {"now": 0}
    for i, level in enumerate(model.levels):
        level.register_forward_hook(lambda mod, inp, out, i=i: calls[i].append(step["now"]))
    stream = StreamingHMNet.from_torch(model)
    for s, tok in enumerate(_random_tokens(TINY, 27)):
        step["now"] = s
        stream.feed_tokens(tok)
    assert calls[0] == list(range(27))
    assert calls[1] == [2, 5, 8, 11, 14, 17, 20, 23, 26]
    assert calls[2] == [8, 17, 26]
    assert stream.runs == [calls[0], calls[1], calls[2]]


def test_streaming_equals_batched_forward():
    model = _model(TINY, seed=1)
    tokens = _random_tokens(TINY, 20, seed=2)
    with torch.no_grad():
        seg, depth, _ = model.forward_sequence(torch.from_numpy(tokens)[:, None])
    stream = StreamingHMNet.from_torch(model)
    for s in range(20):
        pred = stream.feed_tokens(tokens[s])
        np.testing.assert_allclose(pred.logits, seg[s, 0].numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(pred.depth, depth[s, 0, 0].numpy(), rtol=1e-4, atol=1e-4)
    # the memories carry information: a different history changes the prediction at the last step
    other = _random_tokens(TINY, 20, seed=3)
    other[-1] = tokens[-1]
    with torch.no_grad():
        seg2, _, _ = model.forward_sequence(torch.from_numpy(other)[:, None])
    assert not torch.allclose(seg2[-1], seg[-1])


def test_onnx_step_graphs_match_torch(tmp_path):
    model = _model(TINY, seed=4)
    diffs = export_step_graphs(model, tmp_path)
    assert set(diffs) == {"fast", "topdown1", "topdown2", "readout", "level2", "level3", "slow_neck"}
    assert max(diffs.values()) < 1e-4
    tokens = _random_tokens(TINY, 10, seed=5)
    a, b = StreamingHMNet.from_torch(model), StreamingHMNet.from_onnx(TINY, tmp_path)
    for tok in tokens:
        pa, pb = a.feed_tokens(tok), b.feed_tokens(tok)
        np.testing.assert_allclose(pa.logits, pb.logits, atol=1e-3)
        np.testing.assert_allclose(pa.depth, pb.depth, rtol=1e-3)


def test_variants_capacity_and_single_memory():
    base = single_rate_baseline(TINY)
    assert count_parameters(_model(base)) == count_parameters(_model(TINY))
    assert base.rates == (1, 1, 1)
    one = single_memory(TINY)
    model = _model(one)
    assert len([m for m in model.modules() if isinstance(m, MemoryLevel)]) == 1
    seg, depth, states = model.forward_sequence(torch.from_numpy(_random_tokens(one, 3))[:, None])
    assert seg.shape == (3, 1, 4, 32, 32) and len(states) == 1
    stream = StreamingHMNet.from_torch(model)
    assert stream.feed_tokens(_random_tokens(one, 1)[0]).labels.shape == (32, 32)


def test_window_tokens_keep_latest_events_per_cell():
    ev = make_events([0, 1, 2, 5, 31], [0, 0, 0, 1, 31], [10, 20, 30, 40, 4_999_999], [1, 0, 1, 1, 0])
    tok = window_tokens(ev, 0, 5_000_000, 32, 32, stride=4, time_bins=8, max_per_cell=2)
    # cell 0 holds x=0,1,2 (y=0): keep the newest two (x=2 at t=30, then x=1 at t=20), all in time bin 0
    assert tok[0].tolist() == [1 + (0 * 2 + 1) * 16 + 2, 1 + (0 * 2 + 0) * 16 + 1]
    assert tok[1].tolist() == [1 + (0 * 2 + 1) * 16 + 4 + 1, 0]  # x=5,y=1 -> cell 1, local (1,1)
    assert tok[63].tolist() == [1 + (7 * 2 + 0) * 16 + 15, 0]  # last time bin, last cell, last pixel
    seq = sequence_tokens(ev, np.array([5_000_000, 10_000_000]), 5_000_000, 32, 32, 4, 8, 2)
    assert np.array_equal(seq[0], tok) and not seq[1].any()


def test_invalid_configs_are_rejected():
    with pytest.raises(ValueError):
        HMNet(HMNetConfig(width=30, height=32))
    with pytest.raises(ValueError):
        HMNet(HMNetConfig(rates=(2, 3, 9)))
