"""One evaluation over several processes, GPUs or machines, under PyTorch's own ``torchrun``.

    torchrun --nproc-per-node 4 -m fmbench eval --model M --dataset D --tier full --out r.json

``torchrun`` starts the processes and sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; fmbench
joins its process group (gloo on CPU, NCCL on GPUs; rank ``r`` takes ``cuda:LOCAL_RANK``).  The
protocol's batches are dealt out by index -- batch ``b`` to rank ``b mod world`` -- so no image
is padded in or evaluated twice (the ``DistributedSampler`` pitfall).  Each rank appends its
finished (batch, condition) chunks to its own log beside the output
(``r.json.partial.rank{r}.jsonl``); when every rank is done, rank 0 reads all the logs,
assembles the result exactly as one process would (the records are keyed by batch, not by
rank) and writes it; ``run.world_size`` records how many ranks made it.  A killed run resumes
with ``--resume`` under any number of ranks, one included: every rank reads every log first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Shard:
    """This process's place in a distributed run (rank 0 of 1 when there is none)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def mine(self, batch_index: int) -> bool:
        return batch_index % self.world == self.rank


SINGLE = Shard()  # a process on its own


def shard() -> Shard:
    """The shard ``torchrun`` (or any launcher setting ``RANK``/``WORLD_SIZE``) started this
    process as; the process group is joined on first use."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Shard()
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return Shard(rank, world, local)


def barrier(s: Shard) -> None:
    """Wait for every rank (nothing to wait for in a single process)."""
    if s.distributed:
        torch.distributed.barrier()


def device_for(device: str, s: Shard) -> str:
    """Each rank of a distributed GPU run takes its own GPU."""
    if s.distributed and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{s.local_rank}"
    return device
