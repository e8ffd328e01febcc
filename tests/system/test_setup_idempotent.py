"""`tools/setup.sh` a second time, with nothing changed, skips its work and takes well under 30 s."""
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_second_setup_run_is_fast_and_skips_everything():
    start = time.monotonic()
    run = subprocess.run(["bash", "tools/setup.sh"], cwd=REPO, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert run.returncode == 0, run.stderr
    assert elapsed < 30, f"second set-up run took {elapsed:.1f} s"
    assert "pip:" not in run.stdout and "colcon:" not in run.stdout, run.stdout
    assert (REPO / "env.sh").is_file()
