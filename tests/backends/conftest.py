"""Backend tests: register the ``gpu`` marker and skip GPU-marked tests where no CUDA GPU + TensorRT exist.

The marker is also registered here so these tests run on their own; the shared test model lives here too.
"""
from pathlib import Path

import pytest
import torch

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


class ConvGridLinear(torch.nn.Module):
    """Conv features resampled at arbitrary points (grid_sample), pooled, then a linear head —
    the op mix the BEV/TPV methods rely on."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, image, grid):
        sampled = torch.nn.functional.grid_sample(torch.relu(self.conv(image)), grid, align_corners=False)
        return self.head(sampled.mean(dim=(2, 3))), sampled


@pytest.fixture(scope="session")
def conv_grid_linear():
    """The small export/backend test model (a class: seed, then instantiate)."""
    return ConvGridLinear
