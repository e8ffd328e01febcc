"""Run by ``python -m torch.distributed.run --nproc_per_node 2 tests/training/ddp_probe.py OUT``: the example
method through ``train_main`` three times in one process group, with a loss wrapper that records, per rank,
what the runner cannot be trusted to report about itself (thread count, the batches each rank drew, the
weights each rank holds when a step begins). Rank 0's checkpoints, events and model are the runner's own.

- ``straight``: 8 steps of generated batches, a checkpoint every 4 steps (all kept);
- ``resumed``: the same flags, resumed from ``straight``'s step-4 checkpoint;
- ``sharded``: 2 epochs of a 512-point dataset (batch 16: 16 steps per rank per epoch) -> sample indices.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from fovea_core.training import example, train_main

OUT = Path(sys.argv[1])


probes: list[tuple[str, dict]] = []


def probing(build_task, name: str):
    def build(args, ctx):
        task = build_task(args, ctx)
        inner, record = task.loss, {"threads": [], "batches": [], "weights": {}}
        calls = [0]

        def loss(model, batch):
            calls[0] += 1
            record["threads"].append(torch.get_num_threads())
            record["batches"].append(batch[2].tolist() if len(batch) > 2 else float(batch[0].sum()))
            if calls[0] in (1, 2):  # before the first update, and after it
                record["weights"][calls[0]] = torch.nn.utils.parameters_to_vector(model.parameters()).tolist()
            return inner(model, batch)

        task.loss = loss
        probes.append((name, record))
        return task
    return build


def main() -> int:
    dist.init_process_group("gloo")  # train_main joins it and leaves it up for the next run
    rank = dist.get_rank()
    common = ["--threads", "2", "--log-every", "0", "--keep-checkpoints", "0", "--minutes", "0"]
    runs = {
        "straight": ["--iterations", "8", "--checkpoint-every", "4", "--checkpoint-minutes", "0"],
        "resumed": ["--iterations", "8", "--resume", str(OUT / "straight" / "step_00000004.pt")],
        "sharded": ["--iterations", "32", "--data", "dataset"],
    }
    codes = {}
    for name, flags in runs.items():
        codes[name] = train_main(common + flags + ["--run-dir", str(OUT / name), "--out", str(OUT / name / "model.pt")],
                                 probing(example.build_task, name), name="example", description="probe",
                                 out="unused", add_arguments=example.add_arguments)
    (OUT / f"rank{rank}.json").write_text(json.dumps({"codes": codes, "probes": dict(probes)}))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
