"""Data-parallel training on PyTorch's own engine: torchrun starts the processes, torch.distributed joins them.

    torchrun --nproc_per_node 2 -m genlab train vae --data mnist

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them genlab trains in one process as always. The process
group uses gloo on CPU and NCCL on CUDA (one GPU per process, cuda:LOCAL_RANK).

Every rank holds the whole model and the whole data tensor, draws the same seeded batch and keeps its own share of
it, so the global batch sequence is a single process's. Gradients are averaged over the ranks just before each
optimizer step (a step pre-hook, `average_gradients`), not by wrapping networks in DistributedDataParallel: a
family's step calls its networks several times per update (D on real, on fake and on the gradient penalty's
points), freezes D while G learns through it and takes gradients of gradients (WGAN-GP, R1), and DDP's reducer
supports neither torch.autograd.grad nor parameters that change requires_grad between iterations. One all-reduce
of the flattened gradients per optimizer step (as stylegan2-ada-pytorch does for the same reasons) works for every
family without the loop knowing which it trains; what it gives up is DDP's overlap of the all-reduce with the
backward pass (benchmarks/ddp_scaling.py measures what that costs).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import signal
import threading
from dataclasses import dataclass

import torch
import torch.distributed as dist

# How long a collective waits for a rank that stopped answering before every rank gives up with an error
# (instead of hanging): longer than any one step of a CPU run, short enough that a lost rank is reported.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=5)


# A SIGTERM that reached a torchrun rank outside the training loop (see defer_termination); the loop starts by
# honouring it.
termination_requested = threading.Event()


def defer_termination() -> None:
    """Under torchrun, a SIGTERM outside the training loop is recorded instead of killing the process at once.

    When one rank dies, torchrun sends SIGTERM to the others; a rank whose collective has just failed is then on
    its way out, saying why ("another training process stopped ... resume with ..."), and the default action
    killed it half-way, silently (seen in CI). Inside the loop SIGTERM already means "save and stop"
    (train._stop_signals); a rank that cannot finish is SIGKILLed by torchrun after its grace period."""
    signal.signal(signal.SIGTERM, lambda signum, frame: termination_requested.set())


class RankLost(RuntimeError):
    """Another rank stopped (killed, crashed or interrupted) while this one waited for it."""


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the training processes: rank r of `world`; world 1 is a lone process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The one process that writes the run folder (config, logs, previews, checkpoints)."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1


def ranks_from_environment() -> Ranks:
    """The ranks torchrun set (RANK, WORLD_SIZE, LOCAL_RANK), or a lone process when they are absent."""
    if "WORLD_SIZE" not in os.environ:
        return Ranks()
    try:
        ranks = Ranks(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    except (KeyError, ValueError):
        raise ValueError("WORLD_SIZE is set but RANK is missing or not a number: start genlab with torchrun, "
                         "or unset WORLD_SIZE") from None
    if not 0 <= ranks.rank < ranks.world:
        raise ValueError(f"RANK={ranks.rank} is outside WORLD_SIZE={ranks.world}: start genlab with torchrun")
    return ranks


def current() -> Ranks:
    """This process's ranks once the process group is up; a lone process otherwise."""
    if not dist.is_initialized():
        return Ranks()
    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


@contextlib.contextmanager
def process_group(device: str):
    """Join the other ranks for the block (when torchrun started this process with a world of 2 or more) and
    leave afterwards; inside another process_group it does nothing. Yields this process's device: cuda becomes
    cuda:LOCAL_RANK, one GPU per process."""
    ranks = ranks_from_environment()
    if not ranks.parallel or dist.is_initialized():
        yield _device_of_rank(device, ranks)
        return
    device = _device_of_rank(device, ranks)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    try:
        yield device
        # Every rank done before any tears the group down: gloo aborts a process whose peer closes the connections
        # under its background threads ("terminate called without an active exception", seen once in the suite).
        # After an error the ranks have already agreed to stop, or a peer is gone: no barrier to wait on then.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _device_of_rank(device: str, ranks: Ranks) -> str:
    if not ranks.parallel or torch.device(device).type != "cuda":
        return device
    if torch.device(device).index is not None:
        raise ValueError(f"--device {device} names one GPU, but each torchrun process takes its own "
                         "(cuda:LOCAL_RANK): use --device cuda")
    if ranks.local_rank >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK {ranks.local_rank} has no GPU ({torch.cuda.device_count()} here): "
                         "lower --nproc_per_node")
    return f"cuda:{ranks.local_rank}"


def shared(make):
    """`make()` run by rank 0 alone (creating a run folder, writing a checkpoint), its result or its error given
    to every rank, so that the others neither race it nor wait for a rank that failed."""
    ranks = current()
    if not ranks.parallel:
        return make()
    answer = [None]
    if ranks.is_main:
        try:
            answer = [(True, make())]
        except Exception as error:  # any error: the other ranks raise it too instead of waiting for rank 0
            answer = [(False, error)]
    with _collective():
        dist.broadcast_object_list(answer, src=0)
    ok, value = answer[0]
    if not ok:
        raise value
    return value


@contextlib.contextmanager
def _collective():
    """A collective that fails because a peer is gone (killed, crashed, interrupted) raises RankLost."""
    try:
        yield
    except (dist.DistError, RuntimeError) as error:
        raise RankLost(f"another training process stopped ({type(error).__name__}: {str(error).splitlines()[0]})"
                       ) from None


def _in_one_message(tensors: list[torch.Tensor], collective) -> None:
    """Run `collective` (an in-place all-reduce or broadcast) over `tensors` as one flat buffer per dtype: one
    message instead of one per tensor. Every rank passes tensors of the same shapes in the same order."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    with _collective():
        for same in by_dtype.values():
            flat = torch.cat([t.reshape(-1) for t in same])
            collective(flat)
            offset = 0
            for t in same:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()


def average_gradients(optimizers: dict[str, torch.optim.Optimizer]) -> list:
    """Before each step of each optimizer, replace its parameters' gradients by their mean over the ranks (each
    rank's loss is the mean over its share of the batch, so the mean of the ranks' gradients is the gradient of
    the global batch's mean loss). Every rank runs the same code, so the same parameters hold gradients on each.
    Returns the hook handles."""
    world = dist.get_world_size()

    def average(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        _in_one_message(grads, dist.all_reduce)
        for grad in grads:
            grad.div_(world)

    return [optimizer.register_step_pre_hook(average) for optimizer in optimizers.values()]


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm's running statistics, ADA's augmentation strength), as DDP's
    broadcast_buffers does: the ranks' models stay identical, so rank 0's checkpoint is every rank's state."""
    _in_one_message(list(model.buffers()), functools.partial(dist.broadcast, src=0))


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The mean of `values` (a 1-D float tensor) over the ranks; a NaN on any rank makes every rank's NaN, so all
    stop together."""
    values = values.clone()
    with _collective():
        dist.all_reduce(values)
    return values / dist.get_world_size()


def min_over_ranks(value: int, device: str) -> int:
    """The smallest of the ranks' `value`s (a CPU budget's plan: each rank measures its own CPU time)."""
    t = torch.tensor([value], dtype=torch.long, device=device)
    with _collective():
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def gather_objects(value) -> list:
    """Every rank's `value`, in rank order, on every rank (for rank 0 to save them)."""
    gathered = [None] * dist.get_world_size()
    with _collective():
        dist.all_gather_object(gathered, value)
    return gathered


def barrier() -> None:
    if dist.is_initialized():
        with _collective():
            dist.barrier()
