"""Backend tests: register the ``gpu`` marker and skip GPU-marked tests where no CUDA GPU + TensorRT exist.

(The lead owns tests/conftest.py; the marker is registered here so these tests also run on their own.)
"""
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU with TensorRT; skipped elsewhere")


def pytest_collection_modifyitems(config, items):
    # This hook sees the whole session's items; only decide for this folder's tests (others may need
    # a GPU without needing TensorRT).
    gpu_items = [item for item in items
                 if item.get_closest_marker("gpu") is not None and HERE in Path(item.path).parents]
    if not gpu_items:
        return
    from fovea_core.backends.tensorrt_backend import tensorrt_available

    if tensorrt_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and TensorRT >= 10 (not present on this machine)")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(autouse=True)
def _single_thread_torch():
    # The CI machine's two cores are shared by several jobs; tiny models gain nothing from more threads.
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
