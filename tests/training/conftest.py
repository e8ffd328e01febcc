"""Training-runner tests: GPU-marked tests (AMP, nccl) skip where CUDA is absent; the 2-process run is shared."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
REPO = HERE.parents[1]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (not present on this machine)")
    for item in items:
        if item.get_closest_marker("gpu") is not None and HERE in Path(item.path).parents:
            item.add_marker(skip)


def run_torchrun(*args: str, nproc: int = 2, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node N ARGS`` (a free port per launch, so
    concurrent test runs never meet)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={nproc}", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def torchrun():
    return run_torchrun


@pytest.fixture(scope="session")
def ddp_probe(tmp_path_factory):
    """One 2-process gloo launch of ``ddp_probe.py``: its folder and each rank's record."""
    out = tmp_path_factory.mktemp("ddp_probe")
    done = run_torchrun(str(HERE / "ddp_probe.py"), str(out))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return out, ranks, done.stdout
