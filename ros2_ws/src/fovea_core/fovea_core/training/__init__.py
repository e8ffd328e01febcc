"""One training runner for every ``fovea train <method>``.

A method describes its training as a :class:`TrainTask` (model, batches or a dataset, ``loss(model, batch)
-> (loss, scalars)``, optimiser and schedule factories, optional validation, and how to save its own model
files) and calls :func:`train_main`. The runner supplies the rest, identically for every method:

- the same command running as a plain process or under ``torchrun --nproc_per_node N`` (DDP: gloo on CPU,
  nccl on GPU, one device per local rank); a ``DistributedSampler`` for datasets, one random generator per
  rank for generated batches, so ranks see different samples;
- automatic mixed precision on GPU (bf16, or fp16 with a GradScaler), fp32 on CPU; gradient clipping;
  skipping (and, after 20 in a row, stopping on) non-finite gradients;
- budgets in steps and/or wall-clock minutes; ``--threads`` (``torch.set_num_threads``); ``--seed``;
- checkpoints (``<run-dir>/step_*.pt``, a plain dict for ``torch.load(..., weights_only=True)``: model,
  optimiser, schedule, scaler, step, dataset position, elapsed time, every rank's random states, config JSON,
  training log) and ``--resume`` that continues exactly where the run stopped; SIGINT/SIGTERM checkpoint
  and stop;
- on rank 0 only: a tqdm bar (loss, rate, ETA) on a terminal, plain progress lines in logs, TensorBoard
  scalars (``<run-dir>/tensorboard``), checkpoints and the final ``save``.

Common flags: ``--out --run-dir --resume --iterations --minutes --threads --tensorboard-dir --seed --device
--precision --checkpoint-every --checkpoint-minutes --keep-checkpoints --log-every``; the method adds its own.

Minimal method (complete, runnable: ``fovea_core/training/example.py``)::

    from fovea_core.training import ProgressLR, TrainTask, cosine_factor, train_main

    def add_arguments(parser):
        parser.add_argument("--lr", type=float, default=3e-2)

    def build_task(args, ctx):                      # ctx: rank, world_size, device, rng (this rank's), ...
        model = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))

        def batches(rng):                           # or: dataset=..., batch_size=... (sharded per rank)
            x = torch.from_numpy(rng.uniform(-1, 1, (16, 3)).astype(np.float32))
            return x, x.pow(2).sum(1)

        def loss(model, batch):
            x, y = batch
            value = torch.nn.functional.mse_loss(model(x).squeeze(-1), y)
            return value, {"rmse": value.detach().sqrt()}

        return TrainTask(model=model, loss=loss, batches=batches,
                         optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=args.lr),
                         schedule=lambda opt, budget: ProgressLR(opt, cosine_factor(0.1)),
                         clip_grad_norm=1.0, config={"lr": args.lr},
                         save=lambda m, out, summary: torch.save(m.state_dict(), out))

    def main(argv=None):
        return train_main(argv, build_task, name="mymethod", description="Train my method",
                          out="models/mymethod/model.pt", add_arguments=add_arguments, minutes=10)

Run it as ``fovea train mymethod --iterations 500`` or ``torchrun --nproc_per_node 2 -m
fovea_core.mymethod.train --iterations 500``; continue with ``--resume runs/mymethod``.
"""
from .checkpoint import CheckpointError
from .cli import add_runner_arguments, train_main
from .runner import RunResult, RunSettings, autocast_dtype, run
from .task import Budget, ProgressLR, RunContext, Stateful, TaskError, TrainTask, cosine_factor

__all__ = ["Budget", "CheckpointError", "ProgressLR", "RunContext", "RunResult", "RunSettings", "Stateful",
           "TaskError", "TrainTask", "add_runner_arguments", "autocast_dtype", "cosine_factor", "run",
           "train_main"]
