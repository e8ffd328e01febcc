"""What a person watching a run sees (rank 0 only): a tqdm bar with loss / rate / ETA on a terminal, plain
lines at a fixed interval otherwise (so log files stay readable), and TensorBoard scalars."""
from __future__ import annotations

import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

from .task import Budget, Scalars


def _clock(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _fmt(value: float) -> str:
    return f"{value:.3e}" if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4) else f"{value:.4f}"


class Reporter:
    """Progress bar / lines + TensorBoard for rank 0; a do-nothing object on the other ranks."""

    def __init__(self, name: str, budget: Budget, enabled: bool, tensorboard_dir: Path | None,
                 log_every_s: float, start_step: int, interval_log: list[dict]) -> None:
        self.name, self.budget, self.enabled = name, budget, enabled
        self.log_every_s = log_every_s
        self.interval_log = interval_log  # means over each printed interval, kept in the checkpoint
        self.recent: deque[Scalars] = deque(maxlen=100)
        self._since_print: list[Scalars] = []
        self._last_print = time.monotonic()
        self._marks: deque[tuple[int, float]] = deque([(start_step, time.monotonic())])
        self.rate = 0.0  # steps per second over about the last 30 s
        self.writer = None
        self.bar = None
        if not enabled:
            return
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(tensorboard_dir), purge_step=start_step + 1 if start_step else None)
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=budget.iterations, initial=start_step, desc=f"train {name}", unit="step",
                            dynamic_ncols=True, file=sys.stderr)

    def step(self, step: int, elapsed: float, scalars: Scalars) -> None:
        if not self.enabled:
            return
        self.recent.append(scalars)
        self._since_print.append(scalars)
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(f"train/{key}", value, step)
        now = time.monotonic()
        self._marks.append((step, now))
        while len(self._marks) > 2 and now - self._marks[1][1] >= 30.0:
            self._marks.popleft()
        first_step, first_time = self._marks[0]
        if now > first_time:
            self.rate = (step - first_step) / (now - first_time)
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix_str(self._postfix(scalars, elapsed, step), refresh=False)
        if now - self._last_print >= self.log_every_s or self.budget.exhausted(step, elapsed):
            self.flush(step, elapsed)

    def flush(self, step: int, elapsed: float) -> None:
        if not self.enabled or not self._since_print:
            return
        means = {k: float(np.mean([s[k] for s in self._since_print if k in s])) for k in self._since_print[-1]}
        if self.writer is not None:
            self.writer.add_scalar("train/steps_per_second", self.rate, step)
        self.interval_log.append({"step": step, "elapsed_s": round(elapsed, 2), **means})
        self._since_print.clear()
        self._last_print = time.monotonic()
        if self.bar is None:
            print(f"[train {self.name}] {self._where(step)} {self._values(means)} | {self.rate:.2f} step/s | "
                  f"{_clock(elapsed)} elapsed, ETA {self._eta(step, elapsed)}", flush=True)

    def validation(self, step: int, metrics: Scalars) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(f"val/{key}", value, step)
        self.message(f"[val {self.name}] step {step} {self._values(metrics)}")

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, flush=True)

    def recent_means(self) -> Scalars:
        if not self.recent:
            return {}
        return {k: float(np.mean([s[k] for s in self.recent if k in s])) for k in self.recent[-1]}

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()

    # -- formatting -----------------------------------------------------------------------------------------
    def _where(self, step: int) -> str:
        if self.budget.iterations:
            return f"step {step}/{self.budget.iterations} ({100.0 * step / self.budget.iterations:.0f}%)"
        return f"step {step}"

    def _eta(self, step: int, elapsed: float) -> str:
        left = []
        if self.budget.seconds:
            left.append(self.budget.seconds - elapsed)
        if self.budget.iterations and self.rate > 0:
            left.append((self.budget.iterations - step) / self.rate)
        return _clock(min(left)) if left else "?"

    @staticmethod
    def _values(scalars: Scalars) -> str:
        return " ".join(f"{k} {_fmt(v)}" for k, v in scalars.items())

    def _postfix(self, scalars: Scalars, elapsed: float, step: int) -> str:
        main = {k: v for k, v in scalars.items() if k in ("loss", "lr")}
        return f"{self._values(main)} ETA {self._eta(step, elapsed)}"
