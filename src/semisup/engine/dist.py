"""Distributed helpers: under `torchrun` each process takes 1/N of the global batch and the
gradients are averaged, so N processes run the same training as one."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def setup(device: str) -> tuple[int, int, torch.device]:
    """Start the process group when launched by torchrun; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(f"cuda:{local}" if device == "cuda" and world > 1 else device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return rank, world, dev


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def average(tensors: list[torch.Tensor]) -> None:
    """All-reduce a list of tensors to their mean over processes, in one flat buffer."""
    if not active() or not tensors:
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def average_gradients(params) -> None:
    average([p.grad for p in params if p.grad is not None])


def average_buffers(module: torch.nn.Module) -> None:
    """BatchNorm statistics drift apart per process; average them before eval and saving."""
    average([b for b in module.buffers() if b.is_floating_point()])


def any_true(flags: list[bool], device: torch.device) -> list[bool]:
    """Whether any process has each flag set (one all-reduce), so that every process takes the same branch."""
    if not active():
        return flags
    t = torch.tensor(flags, dtype=torch.float32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def gather(obj):
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if active():
        dist.barrier()


def cleanup() -> None:
    if active():
        # every process reaches the teardown together (the command line then leaves by os._exit:
        # the interpreter's teardown after a gloo run aborts a process now and then, `cli.main`)
        dist.barrier()
        dist.destroy_process_group()
