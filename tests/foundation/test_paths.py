"""Relative data paths (models, compat definitions) resolve in a checkout and in an installed workspace."""
from pathlib import Path

from fovea_core import paths


def test_relative_paths_come_from_the_checkout():
    assert paths.resolve_data_path("models/tpv/tpv_cpu.onnx") == paths.repo_root() / "models/tpv/tpv_cpu.onnx"
    assert paths.resolve_data_path("/abs/file.onnx") == Path("/abs/file.onnx")


def test_without_a_checkout_the_installed_share_dir_is_used(monkeypatch, tmp_path):
    (tmp_path / "models" / "tpv").mkdir(parents=True)
    (tmp_path / "models" / "tpv" / "m.onnx").write_bytes(b"")
    monkeypatch.setattr(paths, "find_repo_root", lambda: None)
    monkeypatch.setattr(paths, "installed_share_dir", lambda: tmp_path)
    assert paths.resolve_data_path("models/tpv/m.onnx") == tmp_path / "models/tpv/m.onnx"
    assert paths.models_dir() == tmp_path / "models"


def test_the_installed_share_dir_holds_the_models():
    share = paths.installed_share_dir()  # the workspace built by the set-up
    assert share is not None and (share / "models" / "registration" / "vbreg.onnx").is_file()
    assert (share / "config" / "middleware" / "fastdds_shm.xml").is_file()
