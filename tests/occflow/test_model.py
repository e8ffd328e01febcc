"""The model: shapes, the decoder's ONNX against PyTorch (any number of queries), queries independent of
each other (all in parallel), a simulated scene, and a short training + evaluation run on the runner."""
import numpy as np
import pytest
import torch

from fovea_core.occflow.config import tiny_config
from fovea_core.occflow.model import DenseGrid, ImplicitO, dense_times

CFG = tiny_config()


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(1, CFG.lidar_channels, CFG.ny, CFG.nx, generator=g),
            torch.rand(1, 7, CFG.ny, CFG.nx, generator=g))


def queries(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor([-8.0, -8.0, 0.0]), torch.tensor([8.0, 8.0, CFG.horizon])
    return lo + torch.rand(1, n, 3, generator=g) * (hi - lo)


def test_shapes_and_query_independence():
    torch.manual_seed(0)
    model = ImplicitO(CFG).eval()
    lidar, map_raster = inputs()
    q = queries(50)
    with torch.no_grad():
        occ, flow = model(lidar, map_raster, q)
        occ_part, _ = model(lidar, map_raster, q[:, 10:20])
    assert occ.shape == (1, 50, 3) and flow.shape == (1, 50, 3, 2)
    assert torch.allclose(occ[:, 10:20], occ_part, atol=1e-5)
    dense_occ, dense_flow = DenseGrid(CFG).eval()(lidar, map_raster)
    assert dense_occ.shape == (1, len(dense_times(CFG)), 3, CFG.ny, CFG.nx)
    assert dense_flow.shape == (1, len(dense_times(CFG)), 3, 2, CFG.ny, CFG.nx)


def test_a_query_sees_features_far_from_itself_through_its_offsets():
    """Deformable sampling gives a query a receptive field beyond its own cell: with offsets fixed at
    (+6 m, +6 m), a query at (-6, -6) reads the features around (0, 0) and nothing changes its own cell."""
    torch.manual_seed(0)
    model = ImplicitO(CFG).eval()
    mix = model.decoder.mix                                                 # its first 2K rows: the offsets
    with torch.no_grad():
        mix.weight[:2 * CFG.offsets].zero_()
        mix.bias[:2 * CFG.offsets] = float(np.arctanh(6.0 / CFG.max_offset))
    maps = torch.zeros(1, CFG.decoder_dim + CFG.sample_dim, CFG.ny // 4, CFG.nx // 4)   # 2 m cells over 16 m
    q = torch.tensor([[[-6.0, -6.0, 1.0]]])
    far = maps.clone()
    far[:, CFG.decoder_dim:, 3:5, 3:5] = 5.0                                # keys/values near (0, 0) only
    with torch.no_grad():
        base, _ = model.decoder(maps, q)
        moved, _ = model.decoder(far, q)
    assert not torch.allclose(base, moved)


def test_decoder_and_encoder_onnx_match_pytorch(tmp_path):
    import onnxruntime as ort

    from fovea_core.occflow.export import export

    torch.manual_seed(0)
    model = ImplicitO(CFG).eval()
    diffs = export(model, tmp_path / "m")
    assert max(diffs.values()) < 1e-4, diffs
    from fovea_core.backends import check_tensorrt_ops

    for part in ("encoder", "decoder"):                            # standard ops only: no TensorRT plugin
        report = check_tensorrt_ops(tmp_path / f"m_{part}.onnx")
        assert not report.unsupported and not report.restricted, (part, report)
    lidar, map_raster = inputs(3)
    enc = ort.InferenceSession(str(tmp_path / "m_encoder.onnx"))
    dec = ort.InferenceSession(str(tmp_path / "m_decoder.onnx"))
    maps = enc.run(None, {"lidar": lidar.numpy(), "map": map_raster.numpy()})[0]
    for n in (1, 333, 2048):                                        # the query count is dynamic
        q = queries(n, seed=n)
        occ, flow = dec.run(None, {"maps": maps, "queries": q.numpy()})
        with torch.no_grad():
            ref_occ, ref_flow = model(lidar, map_raster, q)
        assert np.abs(occ - ref_occ.numpy()).max() < 1e-4
        assert np.abs(flow - ref_flow.numpy()).max() < 1e-4


def test_clamped_sample_points_read_the_edge_cell_with_both_neighbours_inside():
    """Points past the edge are clamped to just inside the last cell centre: the value is the edge cell's
    (border padding) and both bilinear neighbours stay in the map (ONNX Runtime's fast GridSample path)."""
    from fovea_core.occflow.config import cpu_config
    from fovea_core.occflow.model import ImplicitDecoder

    big = cpu_config().replace(x_range=(-80.0, 80.0), y_range=(-80.0, 80.0))
    for cfg in (CFG, cpu_config(), big, CFG.replace(x_range=(-8.0, 24.0))):
        bound = ImplicitDecoder(cfg).inner[:, 0]
        for value, cells in zip(bound, (cfg.nx // 4, cfg.ny // 4)):
            pixel = ((value + 1.0) * cells - 1.0) / 2.0           # grid_sample's align_corners=False mapping
            assert cells - 1.001 < pixel < cells - 1, (cfg.nx, cfg.ny, float(pixel))
    maps = torch.randn(1, 3, CFG.ny // 4, CFG.nx // 4, generator=torch.Generator().manual_seed(0))
    bound = ImplicitDecoder(CFG).inner[:, 0]
    corner = torch.stack([bound, bound]).reshape(1, 1, 2, 2) * torch.tensor([1.0, -1.0]).reshape(1, 1, 2, 1)
    read = torch.nn.functional.grid_sample(maps, corner, align_corners=False)[0, :, 0]      # (3, 2)
    step = (maps[..., -1, -1] - maps[..., -2, -2]).abs().max() + (maps[..., 0, 0] - maps[..., 1, 1]).abs().max()
    assert torch.allclose(read[:, 0], maps[0, :, -1, -1], atol=float(2e-3 * step))        # top-right edge cell
    assert torch.allclose(read[:, 1], maps[0, :, 0, 0], atol=float(2e-3 * step))          # bottom-left


def test_simulated_scene_has_agents_on_the_map_seen_by_the_lidar():
    from fovea_core.occflow import data
    from fovea_core.occflow.agents import rasterise
    from fovea_core.occflow.grid import BevGrid

    cfg = CFG.replace(x_range=(-30.0, 30.0), y_range=(-30.0, 30.0))
    samples = data.scene_samples(7, cfg, heldout=True)
    assert len(samples) == 2
    s = samples[0]
    assert s.sweep_valid.all() and s.map_raster[-1].min() == 1.0
    occ, _, _ = rasterise(s.tracks.observed(), BevGrid.of(cfg), 0.0, cfg.flow_dt)
    occupied = occ.max(0) > 0
    assert occupied.sum() > 20
    above_road = s.lidar_counts[-1][2:].sum(0) > 0                  # returns 1 m above the ego origin and up
    assert (above_road & occupied).sum() > 5                        # agents are hit by the ray-cast lidar
    vehicles = occ[0] > 0
    assert (s.map_raster[0][vehicles] > 0).mean() > 0.6             # vehicles drive on the drivable area


def test_training_runs_on_the_shared_runner_and_its_model_is_scored(tmp_path):
    from fovea_core.occflow import evaluate, train
    from fovea_core.occflow.metrics import MetricTable
    from fovea_core.occflow.predict import constant_velocity_predictor, implicit_predictor
    from fovea_core.occflow.sample import Sample

    out = tmp_path / "m.pt"
    rc = train.main(["--config", "tiny", "--train-scenes", "1", "--iterations", "10", "--out", str(out),
                     "--run-dir", str(tmp_path / "run"), "--data-dir", str(tmp_path / "data"), "--log-every", "10"])
    assert rc == 0 and out.exists()
    model, info = train.load_model(out)
    assert info["train_samples"] == 2
    samples = [Sample.load(p) for p in sorted((tmp_path / "data" / "heldout").glob("*.npz"))]
    table = MetricTable()
    evaluate.score(samples[:1], {"ImplicitO": implicit_predictor(model),
                                 "constant velocity": constant_velocity_predictor(model.cfg)}, model.cfg, table)
    for method in ("ImplicitO", "constant velocity"):
        assert table.waypoints(method) == list(model.cfg.waypoints)
    auc = table.mean("ImplicitO", "vehicle", "occupancy_auc")
    assert auc is None or 0.0 <= auc <= 1.0
    from fovea_core.model_files import ModelFileError

    (tmp_path / "pickled.pt").write_bytes(b"\x80\x04K\x01.")            # a plain pickle is refused, never loaded
    with pytest.raises(ModelFileError):
        train.load_model(tmp_path / "pickled.pt")
