"""Corrupt-model-file matrix per node, through the node's own configure (what `fovea run` and launch do):
each bad file leaves the node unconfigured with one line that names the parameter, the file and what is
wrong, never advises ``weights_only=False``, and nothing inside the file runs. `fovea run` prints that line
alone and exits 2, in one process and with one process per node (each the node's own executable).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fovea_core.model_files import ModelFileError, check_model_file, load_onnx_file, load_torch_file

from corrupt_models import ONNX_CASES, TORCH_CASES, make_corrupt
from node_harness import NodeHarness

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


def assert_one_line(text: str, parameter: str, path: Path, expect: str) -> None:
    assert "\n" not in text, text
    assert text.startswith(f"parameter '{parameter}': model file {path}"), text
    assert re.search(expect, text), f"{expect!r} not in: {text}"
    assert "weights_only" not in text and "Traceback" not in text, text


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "code inside a model file ran"


def configure_error(node_class, overrides: dict) -> str:
    harness = NodeHarness(node_class, overrides)
    try:
        assert harness.node.lifecycle_state == "unconfigured"
        values = harness.values()
        assert values["lifecycle_state"] == "unconfigured"
        return harness.up_error
    finally:
        harness.close()


# ------------------------------------------------------------------------------------------- event memory
@pytest.mark.parametrize("case", TORCH_CASES)
def test_event_memory_model_path(case, tmp_path, marker):
    from fovea_ros.nodes.event_memory_node import EventMemoryNode

    path = make_corrupt(case, MODELS / "hmnet" / "hmnet.pt", tmp_path / "hmnet.pt", marker, state_key="state_dict")
    assert_one_line(configure_error(EventMemoryNode, {"model_path": str(path)}), "model_path", path,
                    TORCH_EXPECT[case])


@pytest.mark.parametrize("case", ONNX_CASES)
def test_event_memory_step_graphs(case, tmp_path, marker):
    from fovea_ros.nodes.event_memory_node import EventMemoryNode

    folder = tmp_path / "onnx"
    shutil.copytree(MODELS / "hmnet" / "onnx", folder)
    (folder / "level2.onnx").unlink()
    path = make_corrupt(case, MODELS / "hmnet" / "onnx" / "level2.onnx", folder / "level2.onnx", marker)
    if case == "missing":
        path = folder / "level2.onnx"
    error = configure_error(EventMemoryNode, {"backend": "onnxruntime", "onnx_dir": str(folder)})
    assert_one_line(error, "onnx_dir", path, ONNX_EXPECT[case])


# ----------------------------------------------------------------------------------------------------- TPV
@pytest.mark.parametrize("case", TORCH_CASES)
def test_tpv_checkpoint_path(case, tmp_path, marker):
    from fovea_ros.nodes.tpv_occupancy_node import TpvOccupancyNode

    path = make_corrupt(case, MODELS / "tpv" / "tpv_cpu.pt", tmp_path / "tpv.pt", marker, state_key="model")
    error = configure_error(TpvOccupancyNode, {"backend": "torch", "checkpoint_path": str(path)})
    assert_one_line(error, "checkpoint_path", path, TORCH_EXPECT[case])


@pytest.mark.parametrize("case", ONNX_CASES + ("another_model",))
def test_tpv_model_path(case, tmp_path, marker):
    from fovea_ros.nodes.tpv_occupancy_node import TpvOccupancyNode

    if case == "another_model":  # a valid ONNX model of the wrong kind: an HMNet step graph
        path = tmp_path / "tpv.onnx"
        shutil.copy(MODELS / "hmnet" / "onnx" / "fast.onnx", path)
        expect = r"has no input\(s\) \['images', 'ego2img'\]"
    else:
        path = make_corrupt(case, MODELS / "tpv" / "tpv_cpu.onnx", tmp_path / "tpv.onnx", marker)
        expect = ONNX_EXPECT[case]
    assert_one_line(configure_error(TpvOccupancyNode, {"model_path": str(path)}), "model_path", path, expect)


# -------------------------------------------------------------------------------------------- registration
def registration_dir(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "registration"
    folder.mkdir()
    for name in names:
        shutil.copy(MODELS / "registration" / name, folder)
    return folder


@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "random_bytes", "wrong_shapes", "pickled",
                                  "malicious_pickle", "malicious_torch_zip"])
def test_registration_weights(case, tmp_path, marker):
    from fovea_ros.nodes.registration_node import RegistrationNode

    folder = registration_dir(tmp_path, "vbreg.json")
    path = make_corrupt(case, MODELS / "registration" / "vbreg.pt", folder / "vbreg.pt", marker)
    if case == "missing":
        path = folder / "vbreg.pt"
    error = configure_error(RegistrationNode, {"backend": "torch", "model_dir": str(folder)})
    assert_one_line(error, "model_dir", path, TORCH_EXPECT[case])


@pytest.mark.parametrize("content, expect", [("", "is empty"), ("{not json", "is not valid JSON"),
                                             ("[1, 2]", "not an object"),
                                             ('{"no_such_field": 3}', "is not a VBReg configuration")])
def test_registration_config_file(content, expect, tmp_path):
    from fovea_ros.nodes.registration_node import RegistrationNode

    folder = registration_dir(tmp_path, "vbreg.pt")
    (folder / "vbreg.json").write_text(content)
    error = configure_error(RegistrationNode, {"backend": "torch", "model_dir": str(folder)})
    assert_one_line(error, "model_dir", folder / "vbreg.json", expect)


@pytest.mark.parametrize("case", ["missing", "truncated", "torch_instead", "malicious_pickle"])
def test_registration_onnx(case, tmp_path, marker):
    from fovea_ros.nodes.registration_node import RegistrationNode

    folder = registration_dir(tmp_path)
    path = make_corrupt(case, MODELS / "registration" / "vbreg.onnx", folder / "vbreg.onnx", marker)
    if case == "missing":
        path = folder / "vbreg.onnx"
    error = configure_error(RegistrationNode, {"backend": "onnxruntime", "model_dir": str(folder)})
    assert_one_line(error, "model_dir", path, ONNX_EXPECT[case])


# ------------------------------------------------------------------------- occupancy flow, event anomaly
FEW_TORCH_CASES = ("missing", "truncated", "wrong_keys", "wrong_shapes", "pickled", "malicious_torch_zip")


@pytest.mark.parametrize("case", FEW_TORCH_CASES)
def test_occupancy_flow_checkpoint_path(case, tmp_path, marker):
    from fovea_ros.nodes.occupancy_flow_node import OccupancyFlowNode

    path = make_corrupt(case, MODELS / "occflow" / "implicito.pt", tmp_path / "implicito.pt", marker, state_key="model")
    error = configure_error(OccupancyFlowNode, {"backend": "torch", "checkpoint_path": str(path)})
    assert_one_line(error, "checkpoint_path", path, TORCH_EXPECT[case])


@pytest.mark.parametrize("case", ("truncated", "torch_instead", "malicious_pickle", "sha256_mismatch"))
def test_occupancy_flow_encoder_path(case, tmp_path, marker):
    from fovea_ros.nodes.occupancy_flow_node import OccupancyFlowNode

    path = make_corrupt(case, MODELS / "occflow" / "implicito_encoder.onnx", tmp_path / "encoder.onnx", marker)
    error = configure_error(OccupancyFlowNode, {"encoder_path": str(path)})
    assert_one_line(error, "encoder_path", path, ONNX_EXPECT[case])


@pytest.mark.parametrize("case", FEW_TORCH_CASES)
def test_event_anomaly_model_path(case, tmp_path, marker):
    from fovea_ros.nodes.event_anomaly_node import EventAnomalyNode

    path = make_corrupt(case, MODELS / "anomaly" / "anomaly.pt", tmp_path / "anomaly.pt", marker, state_key="sync_net")
    assert_one_line(configure_error(EventAnomalyNode, {"model_path": str(path)}), "model_path", path,
                    TORCH_EXPECT[case])


# ------------------------------------------------------------------- what a user sees: one line, exit 2
def only_lines(run) -> list[str]:
    return [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]


def run_graph(graph: Path, *extra: str) -> tuple[int, list[str]]:
    run = subprocess.run([sys.executable, "-m", "fovea_ros.cli", "run", str(graph), *extra], capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    return run.returncode, only_lines(run)


def test_fovea_run_prints_one_line_and_exits_2_in_one_process(tmp_path, marker):
    path = make_corrupt("pickled", MODELS / "hmnet" / "hmnet.pt", tmp_path / "hmnet.pt", marker)
    graph = tmp_path / "graph.yaml"
    graph.write_text(f"nodes:\n  - executable: event_memory_node\n    config: event_memory.yaml\n"
                     f"    parameters: {{model_path: '{path}'}}\n")
    code, lines = run_graph(graph)
    assert code == 2 and len(lines) == 1, lines
    assert f"parameter 'model_path': model file {path}: is a Python pickle" in lines[0]


def test_fovea_run_prints_one_line_and_exits_2_with_one_process_per_node(tmp_path):
    """The other mode (each node its own executable), and a configuration error of another kind: an invalid
    topic name is a parameter error too."""
    graph = tmp_path / "graph.yaml"
    graph.write_text("nodes:\n  - executable: voxel_filter_node\n    config: voxel_filter.yaml\n"
                     "    parameters: {input_topic: 'lidar points'}\n")
    code, lines = run_graph(graph, "--processes")
    assert code == 2 and len(lines) == 1 and "parameter 'input_topic'" in lines[0], lines


# ---------------------------------------------------------------------------------------------- the checks
def test_every_committed_model_passes_the_checks():
    """The shipped files load through the same checks (a stale .sha256 beside one would fail here)."""
    onnx_files, torch_files = sorted(MODELS.rglob("*.onnx")), sorted(MODELS.rglob("*.pt"))
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
    assert isinstance(err.value, FileNotFoundError)
