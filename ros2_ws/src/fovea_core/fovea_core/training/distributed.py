"""Process group and device per rank: torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR …)
when present, a plain single process otherwise. gloo on CPU, nccl on GPU."""
from __future__ import annotations

import io
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Placement:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    owns_group: bool = False  # this call created the process group (and so tears it down)

    @property
    def backend(self) -> str | None:
        if self.world_size == 1 and not dist.is_initialized():
            return None
        return "nccl" if self.device.type == "cuda" else "gloo"


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def choose_device(requested: str, local_rank: int) -> torch.device:
    """``auto``: this rank's GPU where CUDA exists, else the CPU. ``cuda`` means this rank's GPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        requested = f"cuda:{local_rank}"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {requested}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"--device {requested}: only {torch.cuda.device_count()} GPU(s) visible "
                               f"(local rank {local_rank})")
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise RuntimeError(f"--device {requested}: use auto, cpu, cuda or cuda:N")
    return device


def start(requested_device: str) -> Placement:
    """Join the process group torchrun set up (if any) and pick this rank's device."""
    if not launched_by_torchrun():
        return Placement(0, 0, 1, choose_device(requested_device, 0))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = choose_device(requested_device, local_rank)
    if dist.is_initialized():  # a caller that set up the group itself keeps it (and tears it down)
        return Placement(rank, local_rank, world, device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    options = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world, **options)
    return Placement(rank, local_rank, world, device, owns_group=True)


def stop(placement: Placement) -> None:
    if placement.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def agree(values: list[float], device: torch.device) -> list[float]:
    """The element-wise maximum over ranks: every rank leaves with the same numbers (elapsed time, stop
    flags), so all of them take the same decisions."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.tolist()


def gather_states(state: dict, device: torch.device) -> list[dict]:
    """Every rank's ``state`` (tensors, numbers, strings, containers), collected on rank 0 (others get []).

    Serialised with ``torch.save`` and read back with ``torch.load(weights_only=True)``: torch's object
    collectives would unpickle arbitrary objects, which this project never does."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [state]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8).to(device)
    world = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([payload.numel()], dtype=torch.int64, device=device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=device)
    padded[:payload.numel()] = payload
    gathered = [torch.zeros(longest, dtype=torch.uint8, device=device) for _ in range(world)]
    dist.all_gather(gathered, padded)
    if dist.get_rank() != 0:
        return []
    return [torch.load(io.BytesIO(g[:int(n.item())].cpu().numpy().tobytes()), weights_only=True)
            for g, n in zip(gathered, sizes)]
