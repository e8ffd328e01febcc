"""The runner under real torchrun with 2 CPU processes (gloo): see ddp_probe.py for the three runs."""
from __future__ import annotations

import itertools
import json

import torch

from fovea_core.training import example


def _model(state):
    model = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    if isinstance(state, list):
        torch.nn.utils.vector_to_parameters(torch.tensor(state), model.parameters())
    else:
        model.load_state_dict(state)
    return model


def _held_out_rmse(model) -> float:
    points = example.PointSet(256, seed=999)
    with torch.no_grad():
        return float(((model(points.x).squeeze(-1) - points.y) ** 2).mean().sqrt())


def test_both_ranks_hold_identical_weights_after_a_step_though_their_batches_differ(ddp_probe):
    _, ranks, _ = ddp_probe
    straight = [r["probes"]["straight"] for r in ranks]
    assert straight[0]["batches"][0] != straight[1]["batches"][0]  # each rank drew its own batch
    before = [s["weights"]["1"] for s in straight]
    after = [s["weights"]["2"] for s in straight]
    assert after[0] != before[0]  # the step changed the weights ...
    assert after[0] == after[1]  # ... to the same bits on both ranks (DDP averaged the two gradients)


def test_loss_decreases_on_held_out_points(ddp_probe):
    out, ranks, _ = ddp_probe
    initial = _held_out_rmse(_model(ranks[0]["probes"]["sharded"]["weights"]["1"]))
    trained = _held_out_rmse(_model(torch.load(out / "sharded" / "model.pt", weights_only=True)["state_dict"]))
    assert trained < 0.8 * initial, (initial, trained)
    log = json.loads(torch.load(out / "sharded" / "step_00000032.pt", weights_only=True)["log"])
    losses = [entry["loss"] for entry in log]
    assert len(losses) == 32 and sum(losses[-8:]) < sum(losses[:8])


def test_dataset_is_sharded_disjointly_and_reshuffled_per_epoch(ddp_probe):
    _, ranks, _ = ddp_probe
    seen = [r["probes"]["sharded"]["batches"] for r in ranks]  # 32 steps of 16 indices per rank
    epoch = [set(itertools.chain(*s[:16])) for s in seen]
    assert len(epoch[0]) == len(epoch[1]) == 256
    assert not epoch[0] & epoch[1] and len(epoch[0] | epoch[1]) == 512  # the whole dataset, once
    assert seen[0][16:] != seen[0][:16]  # epoch 2 in another order
    assert set(itertools.chain(*seen[0][16:])) | set(itertools.chain(*seen[1][16:])) == set(range(512))


def test_rank_zero_alone_writes_checkpoints_and_tensorboard(ddp_probe):
    out, _, stdout = ddp_probe
    straight = out / "straight"
    assert sorted(p.name for p in straight.glob("step_*.pt")) == ["step_00000004.pt", "step_00000008.pt"]
    events = list((straight / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1  # one writer in the whole run (each process would create its own file)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("train/loss")] == list(range(1, 9))
    assert {"train/lr", "train/grad_norm", "train/rmse", "val/rmse"} <= set(accumulator.Tags()["scalars"])
    # rank 0's progress lines only: each step's line appears once, not once per rank
    assert stdout.count("[train example] step 3/8 ") == 1  # the resumed run starts at step 5
    blob = torch.load(straight / "step_00000008.pt", weights_only=True)
    assert len(blob["ranks"]) == 2  # both ranks' random states, collected by rank 0
    assert blob["ranks"][0]["rng"]["numpy_generator"] != blob["ranks"][1]["rng"]["numpy_generator"]


def test_resume_from_a_mid_run_checkpoint_equals_the_uninterrupted_run(ddp_probe):
    out, ranks, stdout = ddp_probe
    assert "resumed from" in stdout and "at step 4" in stdout
    assert len(ranks[0]["probes"]["resumed"]["batches"]) == 4  # steps 5..8 only
    assert ranks[0]["probes"]["resumed"]["batches"] == ranks[0]["probes"]["straight"]["batches"][4:]
    assert ranks[1]["probes"]["resumed"]["batches"] == ranks[1]["probes"]["straight"]["batches"][4:]
    straight = torch.load(out / "straight" / "model.pt", weights_only=True)["state_dict"]
    resumed = torch.load(out / "resumed" / "model.pt", weights_only=True)["state_dict"]
    for name in straight:
        assert (resumed[name] - straight[name]).abs().max() <= 1e-7, name


def test_configured_thread_count_is_honoured_on_every_rank(ddp_probe):
    _, ranks, _ = ddp_probe
    # torchrun sets OMP_NUM_THREADS=1 for its workers; --threads 2 must win on both ranks, every step
    for rank in ranks:
        for probe in rank["probes"].values():
            assert set(probe["threads"]) == {2}
    assert all(r["codes"] == {"straight": 0, "resumed": 0, "sharded": 0} for r in ranks)
