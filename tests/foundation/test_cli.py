"""Every `fovea` sub-command resolves to a module with a main(argv), and answers --help."""
import importlib
import subprocess
import sys

import pytest

from fovea_ros.cli import METHODS, TOOLS, main


@pytest.mark.parametrize("module", sorted({m for m, _ in TOOLS.values()} |
                                          {f"{pkg}.{stage}" for pkg in METHODS.values()
                                           for stage in ("train", "evaluate")}))
def test_every_command_module_has_a_main(module):
    assert callable(importlib.import_module(module).main)


def test_help_and_unknown_commands(capsys):
    assert main(["--help"]) == 0
    assert "replay" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown command"):
        main(["no-such-command"])
    with pytest.raises(SystemExit, match="name a method"):
        main(["train", "no-such-method"])


def test_the_installed_command_runs():
    run = subprocess.run(["fovea", "info", "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "usage" in run.stdout
    run = subprocess.run([sys.executable, "-m", "fovea_ros.cli", "eval", "registration", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
