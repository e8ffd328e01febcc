"""Corrupt-model-file matrix through every method's own loader: each bad file fails with one line that names the
parameter, the file and what is wrong, never advises ``weights_only=False``, and nothing inside the file runs."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from fovea_core.model_files import ModelFileError, check_model_file, load_onnx_file, load_torch_file

from corrupt_models import ONNX_CASES, TORCH_CASES, make_corrupt

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"

# what the one line must say for each case (a regular expression)
TORCH_EXPECT = {
    "missing": "does not exist", "directory": "is a directory", "empty": r"is empty \(0 bytes\)",
    "truncated": "damaged zip archive", "random_bytes": "is not a torch state file",
    "onnx_instead": "is not a torch state file", "wrong_keys": r"has no key\(s\)|does not match",
    "wrong_shapes": "has shape .* needs", "pickled": "is a Python pickle", "malicious_pickle": "is a Python pickle",
    "malicious_torch_zip": "refused: it holds Python objects", "sha256_mismatch": "sha256 .* does not match",
}
ONNX_EXPECT = {
    "missing": "does not exist", "directory": "is a directory", "empty": r"is empty \(0 bytes\)",
    "truncated": "ONNX model", "random_bytes": "ONNX model", "torch_instead": "is a zip archive",
    "pickled": "is a Python pickle", "malicious_pickle": "is a Python pickle",
    "sha256_mismatch": "sha256 .* does not match",
}


def assert_one_line(exc: ModelFileError, parameter: str, path: Path, expect: str) -> None:
    text = str(exc)
    assert "\n" not in text, text
    assert text.startswith(f"parameter '{parameter}': model file {path}"), text
    assert re.search(expect, text), f"{expect!r} not in: {text}"
    assert "weights_only" not in text and "Traceback" not in text, text


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "code inside a model file ran"


# ---------------------------------------------------------------------------------------------- HMNet (torch)
@pytest.mark.parametrize("case", TORCH_CASES)
def test_hmnet_state_file(case, tmp_path, marker):
    from fovea_core.events.hmnet.train import load_model

    path = make_corrupt(case, MODELS / "hmnet" / "hmnet.pt", tmp_path / "hmnet.pt", marker, state_key="state_dict")
    with pytest.raises(ModelFileError) as err:
        load_model(path, "model_path")
    assert_one_line(err.value, "model_path", path, TORCH_EXPECT[case])


@pytest.mark.parametrize("case", ONNX_CASES)
def test_hmnet_step_graphs(case, tmp_path, marker):
    from fovea_core.events.hmnet.streaming import StreamingHMNet
    from fovea_core.events.hmnet.train import load_model

    folder = tmp_path / "onnx"
    shutil.copytree(MODELS / "hmnet" / "onnx", folder)
    (folder / "level2.onnx").unlink()
    path = make_corrupt(case, MODELS / "hmnet" / "onnx" / "level2.onnx", folder / "level2.onnx", marker)
    if case == "missing":
        path = folder / "level2.onnx"
    model, _ = load_model(MODELS / "hmnet" / "hmnet.pt")
    with pytest.raises(ModelFileError) as err:
        StreamingHMNet.from_onnx(model.cfg, folder, parameter="onnx_dir")
    assert_one_line(err.value, "onnx_dir", path, ONNX_EXPECT[case])


# ------------------------------------------------------------------------------------------------ TPV (both)
@pytest.mark.parametrize("case", TORCH_CASES)
def test_tpv_checkpoint(case, tmp_path, marker):
    from fovea_core.tpv.inference import TPVInference

    path = make_corrupt(case, MODELS / "tpv" / "tpv_cpu.pt", tmp_path / "tpv.pt", marker, state_key="model")
    with pytest.raises(ModelFileError) as err:
        TPVInference.load("torch", checkpoint_path=path, checkpoint_parameter="checkpoint_path")
    assert_one_line(err.value, "checkpoint_path", path, TORCH_EXPECT[case])


@pytest.mark.parametrize("case", ONNX_CASES + ("no_config_metadata",))
def test_tpv_onnx(case, tmp_path, marker):
    from fovea_core.tpv.inference import TPVInference

    good = MODELS / "tpv" / "tpv_cpu.onnx"
    if case == "no_config_metadata":  # a valid ONNX model of the wrong kind: an HMNet step graph
        path = tmp_path / "tpv.onnx"
        shutil.copy(MODELS / "hmnet" / "onnx" / "fast.onnx", path)
        expect = r"has no input\(s\) \['images', 'ego2img'\]"
    else:
        path = make_corrupt(case, good, tmp_path / "tpv.onnx", marker)
        expect = ONNX_EXPECT[case]
    with pytest.raises(ModelFileError) as err:
        TPVInference.load("onnxruntime", model_path=path, model_parameter="model_path")
    assert_one_line(err.value, "model_path", path, expect)


# ---------------------------------------------------------------------------------------- registration (both)
def registration_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "registration"
    folder.mkdir()
    shutil.copy(MODELS / "registration" / "vbreg.json", folder)
    return folder


@pytest.mark.parametrize("case", TORCH_CASES)
def test_registration_weights(case, tmp_path, marker):
    from fovea_core.registration.model_io import load_scorer

    folder = registration_dir(tmp_path)
    path = make_corrupt(case, MODELS / "registration" / "vbreg.pt", folder / "vbreg.pt", marker)
    if case == "missing":
        path = folder / "vbreg.pt"
    with pytest.raises(ModelFileError) as err:
        load_scorer("torch", folder, parameter="model_dir")
    assert_one_line(err.value, "model_dir", path, TORCH_EXPECT[case])


@pytest.mark.parametrize("content, expect", [("", "is empty"), ("{not json", "is not valid JSON"),
                                             ("[1, 2]", "not an object"), ('{"no_such_field": 3}',
                                                                          "is not a VBReg configuration")])
def test_registration_config(content, expect, tmp_path):
    from fovea_core.registration.model_io import load_network

    folder = registration_dir(tmp_path)
    shutil.copy(MODELS / "registration" / "vbreg.pt", folder)
    (folder / "vbreg.json").write_text(content)
    with pytest.raises(ModelFileError) as err:
        load_network(folder, "model_dir")
    assert_one_line(err.value, "model_dir", folder / "vbreg.json", expect)


@pytest.mark.parametrize("case", ("truncated", "random_bytes", "torch_instead", "empty"))
def test_registration_onnx(case, tmp_path, marker):
    from fovea_core.registration.model_io import load_scorer

    path = make_corrupt(case, MODELS / "registration" / "vbreg.onnx", tmp_path / "vbreg.onnx", marker)
    with pytest.raises(ModelFileError) as err:
        load_scorer("onnxruntime", tmp_path, onnx_path=path, parameter="onnx_path")
    assert_one_line(err.value, "onnx_path", path, ONNX_EXPECT[case])


# --------------------------------------------------------------------------------------------- the checks
def test_every_committed_model_passes_the_checks():
    """The shipped files load through the same checks (a stale .sha256 beside one would fail here)."""
    onnx_files = sorted(MODELS.rglob("*.onnx"))
    torch_files = sorted(MODELS.rglob("*.pt"))
    assert onnx_files and torch_files
    for path in onnx_files:
        load_onnx_file(path, "model_path")
    for path in torch_files:
        assert load_torch_file(path, "model_path")


def test_a_digest_file_that_holds_no_digest_is_an_error(tmp_path):
    path = tmp_path / "m.pt"
    shutil.copy(MODELS / "hmnet" / "hmnet1.pt", path)
    (tmp_path / "m.pt.sha256").write_text("not a digest\n")
    with pytest.raises(ModelFileError, match="holds no sha256 digest"):
        check_model_file(path, "torch", "model_path")


def test_without_a_parameter_the_line_still_names_the_file(tmp_path):
    with pytest.raises(ModelFileError) as err:
        load_torch_file(tmp_path / "gone.pt")
    assert str(err.value) == f"model file {tmp_path / 'gone.pt'}: does not exist"
