"""The runner in one process: stop-by-signal + resume, refused resumes, non-finite gradients, budgets,
progress lines, threads, precision rules, checkpoint contents."""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from fovea_core.training import (Budget, ProgressLR, RunContext, RunSettings, TaskError, TrainTask, autocast_dtype,
                                 cosine_factor, example, run, train_main)


def _train(tmp_path, name: str, *flags: str, build=example.build_task) -> int:
    return train_main(["--run-dir", str(tmp_path / name), "--out", str(tmp_path / name / "model.pt"),
                       "--minutes", "0", "--log-every", "0", *flags], build, name="example",
                      description="test", out="unused", add_arguments=example.add_arguments)


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _interrupting_at(step: int):
    """The example task, with SIGINT sent to this process during the given step (as Ctrl-C would)."""
    def build(args, ctx):
        task = example.build_task(args, ctx)
        inner, calls = task.loss, [0]

        def loss(model, batch):
            calls[0] += 1
            if calls[0] == step:
                os.kill(os.getpid(), signal.SIGINT)
            return inner(model, batch)
        task.loss = loss
        return task
    return build


def test_a_signal_checkpoints_and_resume_finishes_like_the_uninterrupted_run(tmp_path, capsys):
    flags = ("--iterations", "12", "--data", "dataset", "--batch", "64")  # 8 batches per epoch: crosses an epoch
    assert _train(tmp_path, "straight", *flags) == 0
    assert _train(tmp_path, "stopped", *flags, build=_interrupting_at(10)) == 1
    stopped = tmp_path / "stopped"
    assert [p.name for p in stopped.glob("step_*.pt")] == ["step_00000010.pt"]
    assert not (stopped / "model.pt").exists()  # an interrupted run leaves the model files alone
    assert "continue with --resume" in capsys.readouterr().out
    blob = torch.load(stopped / "step_00000010.pt", weights_only=True)
    assert (blob["epoch"], blob["batch_in_epoch"]) == (1, 2)
    assert _train(tmp_path, "stopped", *flags, "--resume", str(stopped)) == 0
    straight, resumed = _weights(tmp_path / "straight" / "model.pt"), _weights(stopped / "model.pt")
    for name in straight:
        assert (resumed[name] - straight[name]).abs().max() <= 1e-7, name


def test_resume_is_refused_with_its_reason(tmp_path, capsys):
    assert _train(tmp_path, "first", "--iterations", "2", "--hidden", "8") == 0
    capsys.readouterr()
    checkpoint = tmp_path / "first" / "step_00000002.pt"
    assert _train(tmp_path, "again", "--iterations", "4", "--hidden", "16", "--resume", str(checkpoint)) == 2
    assert "another config: hidden: 8 -> 16" in capsys.readouterr().err
    assert _train(tmp_path, "again", "--iterations", "4", "--hidden", "8",
                  "--resume", str(tmp_path / "first" / "model.pt")) == 2
    assert "not a Fovea training checkpoint" in capsys.readouterr().err
    cut = tmp_path / "cut.pt"
    cut.write_bytes(checkpoint.read_bytes()[:500])
    assert _train(tmp_path, "again", "--iterations", "4", "--hidden", "8", "--resume", str(cut)) == 2
    assert "cannot read it as a training checkpoint" in capsys.readouterr().err
    assert _train(tmp_path, "again", "--iterations", "4", "--resume", str(tmp_path / "nowhere")) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_a_run_needs_a_budget_and_valid_threads(tmp_path):
    for flags in (["--iterations", "0"], ["--iterations", "2", "--threads", "0"]):
        with pytest.raises(SystemExit) as stopped:
            _train(tmp_path, "x", *flags)
        assert stopped.value.code == 2


def test_plain_progress_lines_checkpoint_contents_and_pruning(tmp_path, capsys):
    assert _train(tmp_path, "run", "--iterations", "4", "--checkpoint-every", "1", "--keep-checkpoints", "2") == 0
    out = capsys.readouterr().out  # not a terminal: plain lines, no bar
    assert "[train example] step 4/4 (100%) loss " in out and " step/s | " in out and "ETA 0:00:00" in out
    assert "\r" not in out
    assert sorted(p.name for p in (tmp_path / "run").glob("step_*.pt")) == ["step_00000003.pt", "step_00000004.pt"]
    blob = torch.load(tmp_path / "run" / "step_00000004.pt", weights_only=True)
    assert blob["step"] == 4 and blob["optimizer"]["state"] and blob["scheduler"]["progress"] == pytest.approx(0.75)
    assert json.loads(blob["config"]) == {"hidden": 32, "batch": 16, "lr": 0.03, "data": "generated"}
    assert json.loads(blob["run"])["threads"] == 1
    assert [entry["step"] for entry in json.loads(blob["log"])] == [1, 2, 3, 4]
    assert set(blob["ranks"][0]["rng"]) == {"torch", "numpy_generator", "numpy_global", "python"}


def test_threads_flag_is_applied_for_the_run_and_restored_after(tmp_path):
    seen = []

    def build(args, ctx):
        seen.append(torch.get_num_threads())
        return example.build_task(args, ctx)
    before = torch.get_num_threads()
    target = 3 if before != 3 else 2
    assert _train(tmp_path, "threads", "--iterations", "1", "--threads", str(target), build=build) == 0
    assert seen == [target] and torch.get_num_threads() == before


def _ctx(tmp_path) -> RunContext:
    import numpy as np
    return RunContext(0, 0, 1, torch.device("cpu"), 0, np.random.default_rng(0), tmp_path)


def _settings(tmp_path, iterations=None, seconds=None) -> RunSettings:
    return RunSettings(name="t", out=tmp_path / "m.pt", run_dir=tmp_path / "run", budget=Budget(iterations, seconds),
                       tensorboard_dir=None, log_every_s=0.0)


def _linear_task(loss_values, saved):
    model = torch.nn.Linear(2, 1)

    def loss(m, batch):
        value = m(batch).sum()
        scale = loss_values(len(saved["calls"]))
        saved["calls"].append(torch.nn.utils.parameters_to_vector(m.parameters()).detach().clone())
        return value * scale, {}
    return TrainTask(model=model, loss=loss, batches=lambda rng: torch.ones(4, 2),
                     optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
                     save=lambda m, out, s: saved.setdefault("summary", s))


def test_a_non_finite_gradient_skips_the_update(tmp_path, capsys):
    saved = {"calls": []}
    task = _linear_task(lambda i: float("nan") if i == 1 else 1.0, saved)
    result = run(task, _settings(tmp_path, iterations=3), _ctx(tmp_path))
    calls = saved["calls"]  # weights at the start of steps 1, 2, 3
    assert not torch.equal(calls[0], calls[1])  # step 1 updated
    assert torch.equal(calls[1], calls[2])  # step 2's NaN gradient did not
    assert result.completed and "step 2: non-finite gradient, update skipped" in capsys.readouterr().out


def test_only_non_finite_gradients_stop_the_run(tmp_path):
    saved = {"calls": []}
    task = _linear_task(lambda i: float("inf"), saved)
    with pytest.raises(FloatingPointError, match="20 consecutive steps"):
        run(task, _settings(tmp_path, iterations=100), _ctx(tmp_path))
    assert all(torch.equal(saved["calls"][0], w) for w in saved["calls"])


def test_wall_clock_budget_ends_the_run_and_drives_progress_lr(tmp_path):
    saved = {"calls": []}
    task = _linear_task(lambda i: 1.0, saved)
    lrs = []
    task.schedule = lambda opt, budget: ProgressLR(opt, lambda p: lrs.append(p) or cosine_factor(0.0)(p))
    result = run(task, _settings(tmp_path, seconds=0.5), _ctx(tmp_path))
    assert result.completed and result.seconds >= 0.5 and result.step == len(saved["calls"]) > 1
    assert lrs[0] == 0.0 and 0.0 < lrs[-1] <= 1.0 and lrs == sorted(lrs)
    assert saved["summary"]["steps"] == result.step


def test_task_and_precision_rules():
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cpu) is None
    with pytest.raises(TaskError, match="CUDA devices only"):
        autocast_dtype("fp16", cpu)
    with pytest.raises(TaskError, match="exactly one of 'batches' and 'dataset'"):
        TrainTask(model=torch.nn.Linear(1, 1), loss=None, optimizer=None, save=None).check()
    assert Budget(10, 100.0).progress(5, 80.0) == 0.8 and Budget(10, None).exhausted(10, 0.0)


def test_loss_scaling_branch_skips_inf_steps_and_checkpoints_the_scaler(tmp_path, monkeypatch, capsys):
    # The fp16 + GradScaler branch is meant for CUDA (test_gpu.py); torch also runs fp16 autocast and a
    # GradScaler on the CPU, which lets this machine exercise the branch's bookkeeping.
    from fovea_core.training import runner

    monkeypatch.setattr(runner, "autocast_dtype", lambda precision, device: torch.float16)
    assert _train(tmp_path, "fp16", "--iterations", "30") == 0
    out = capsys.readouterr().out
    assert "step 1: inf/NaN gradient, update skipped, loss scale now 32768" in out  # 65536 overflows at first
    blob = torch.load(tmp_path / "fp16" / "step_00000030.pt", weights_only=True)
    assert json.loads(blob["run"])["precision"] == "float16" and blob["scaler"]["scale"] == 32768.0
    assert all(torch.isfinite(v).all() for v in _weights(tmp_path / "fp16" / "model.pt").values())


def test_a_terminal_gets_a_progress_bar_with_loss_and_eta(tmp_path, monkeypatch, capsys):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert _train(tmp_path, "bar", "--iterations", "3") == 0
    bar = terminal.getvalue()
    assert "train example" in bar and "3/3" in bar and "loss " in bar and "ETA " in bar and "step/s" in bar
    assert "[train example] step 3/3" not in capsys.readouterr().out  # the bar replaces the plain lines
