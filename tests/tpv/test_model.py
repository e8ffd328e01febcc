"""Model variants, feature budgets, backbones and the paper-size GPU configuration."""
import pytest
import torch

from fovea_core.tpv.config import gpu_config, tiny_config
from fovea_core.tpv.model import ResNet, build_model, variant_dim
from fovea_core.tpv.nuscenes_sample import load_rig
from fovea_core.tpv.projection import ego_to_image

TINY = tiny_config()


def _inputs(cfg, points=10):
    _, K, T = load_rig(image_size=(cfg.image_width, cfg.image_height))
    return (torch.randn(1, 6, 3, cfg.image_height, cfg.image_width),
            torch.from_numpy(ego_to_image(K, T)).float()[None], torch.zeros(1, points, 3))


@pytest.mark.parametrize("variant", ["tpv", "bev", "voxel"])
def test_variants_output_voxel_and_point_logits(variant):
    model = build_model(TINY, variant).eval()
    with torch.no_grad():
        vox, pts = model(*_inputs(TINY))
    assert vox.shape == (1, TINY.num_classes, *TINY.voxel_shape) and pts.shape == (1, 10, TINY.num_classes)
    assert torch.isfinite(vox).all()


def test_bev_gets_the_tpv_feature_budget_and_voxel_the_full_volume():
    tpv, bev, vox = (build_model(TINY, v) for v in ("tpv", "bev", "voxel"))
    cells = lambda m: sum(s.num_cells for s in m.specs) * m.dim  # noqa: E731
    assert cells(tpv) == (8 * 8 + 8 * 4 + 8 * 4) * 16
    assert abs(cells(bev) - cells(tpv)) / cells(tpv) < 0.15   # one plane, wider channels
    assert variant_dim(TINY, "bev") % TINY.num_heads == 0
    assert cells(vox) == 8 * 8 * 4 * 16


def test_gradients_reach_backbone_queries_and_decoder():
    model = build_model(TINY).train()
    vox, pts = model(*_inputs(TINY))
    (vox.mean() + pts.mean()).backward()
    assert model.backbone.stem[0].weight.grad.abs().sum() > 0   # through image cross-attention
    assert model.queries.queries[1].grad.abs().sum() > 0        # side plane queries
    assert model.classifier.weight.grad.abs().sum() > 0


def test_resnet50_and_101_have_the_published_depths():
    # conv layers in the residual stages: 3 per bottleneck block, plus the projection shortcuts
    for name, blocks in (("resnet50", 16), ("resnet101", 33)):
        net = ResNet(name)
        assert sum(len(s) for s in net.stages) == blocks
        assert net.channels == [256, 512, 1024, 2048]
    params = sum(p.numel() for p in ResNet("resnet50").parameters())
    assert 23.0e6 < params < 23.7e6  # torchvision's resnet50 without its fc layer: 23.5M


def test_gpu_config_is_the_paper_lidarseg_size():
    cfg = gpu_config()
    assert (cfg.plane_x, cfg.plane_y, cfg.plane_z, cfg.upsample) == (100, 100, 8, 2)
    assert cfg.pillar_points == (4, 32, 32) and (cfg.num_hcab, cfg.num_hab) == (3, 2)
    assert cfg.voxel_shape == (200, 200, 16)


@pytest.mark.gpu
def test_gpu_config_trains_one_step_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    cfg = gpu_config()
    model = build_model(cfg).cuda().train()
    images, ego2img, pts = (t.cuda() for t in _inputs(cfg, 1000))
    vox, p = model(images, ego2img, pts)
    (vox.mean() + p.mean()).backward()
    assert vox.shape == (1, cfg.num_classes, 200, 200, 16)


def test_cameras_sampled_only_where_they_see_equal_the_exported_dense_graph(monkeypatch):
    """Eager PyTorch samples each camera only for the queries it sees; the traced graph samples all and masks.
    Same numbers, same gradients."""
    from dataclasses import replace

    from fovea_core.tpv import attention

    cfg = replace(TINY, point_image_features=True)
    model = build_model(cfg).train()
    images, ego2img, _ = _inputs(cfg)
    points = (torch.rand(1, 40, 3) - 0.5) * torch.tensor([16.0, 16.0, 4.0]) + torch.tensor([0, 0, 2.0])

    def run():
        model.zero_grad()
        vox, pts = model(images, ego2img, points)
        (vox.square().mean() + pts.square().mean()).backward()
        return vox.detach(), pts.detach(), model.backbone.stem[0].weight.grad.clone()

    sparse = run()
    monkeypatch.setattr(attention.ImageCrossAttention, "_sample_visible", attention.ImageCrossAttention._sample_all)
    dense = run()
    for a, b in zip(sparse, dense):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_image_blind_network_ignores_the_images():
    from dataclasses import replace

    model = build_model(replace(TINY, use_images=False)).eval()
    images, ego2img, pts = _inputs(TINY)
    with torch.no_grad():
        a = model(images, ego2img, pts)
        b = model(torch.zeros_like(images), ego2img, pts)
    assert model.backbone is None and all(blk.cross is None for blk in model.blocks)
    torch.testing.assert_close(a[0], b[0]) and torch.testing.assert_close(a[1], b[1])
