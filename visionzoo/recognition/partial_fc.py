"""Partial-FC (An et al. 2021): a margin-softmax classifier sharded and sampled across ranks.

Each rank holds ``num_classes / world`` rows of the class matrix. Per step the embeddings and
labels of all ranks are gathered, each rank scores them against a sample of its classes (every
positive class of the global batch kept, a fraction ``sample_rate`` of the rest), and the
softmax is normalised across ranks (all-reduce of the max and of the sum of exponentials). With
``sample_rate=1`` the loss is exactly the full margin softmax over all classes.

Under DDP the shard is not replicated, so DDP must leave it alone: call
``ignore_shards_in_ddp(module)`` on the model before DDP wraps it (Lightning wraps the
LightningModule in ``strategy.setup``, so ``__init__`` is early enough). Every rank holds other
rows, so resuming a sharded run needs a checkpoint with all ranks' rows.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from visionzoo.recognition.heads import (
    HEADS,
    ClassifierHead,
    check_inputs,
    full_precision,
    resolve_scale,
)


def _world() -> tuple[int, int]:
    """(world size, rank), (1, 0) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``factor`` (see ``PartialFC.forward``)."""

    @staticmethod
    def forward(ctx, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.factor, None


def _all_gather_rows(x: Tensor) -> tuple[Tensor, int]:
    """All ranks' (B_r, ...) rows concatenated in rank order, and where this rank's start.

    Batch sizes may differ between ranks (rows are padded for the collective).
    """
    world, rank = _world()
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s) for s in sizes]
    padded = x.new_zeros((max(counts), *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    rows = torch.cat([part[:n] for part, n in zip(parts, counts, strict=True)])
    return rows, sum(counts[:rank])


class _GatherWithGrad(torch.autograd.Function):
    """All-gather (B_r, D) rows of every rank into (Σ B_r, D).

    Backward sums the gradient of the gathered rows over ranks (each rank saw only its own class
    shard's share) and returns this rank's rows.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        gathered, ctx.start = _all_gather_rows(x)
        ctx.count = x.shape[0]
        return gathered

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.start : ctx.start + ctx.count]


class _SumAcrossRanks(torch.autograd.Function):
    """All-reduce sum whose backward is the identity.

    Every rank computes the same loss from the summed value, so the loss's gradient w.r.t. this
    rank's addend is the gradient w.r.t. the sum itself, on this rank alone.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad


def _sum_across_ranks(x: Tensor, world: int) -> Tensor:
    return _SumAcrossRanks.apply(x) if world > 1 else x


def distributed_cross_entropy(logits: Tensor, labels: Tensor, world: int) -> Tensor:
    """Per-sample cross-entropy (N,) over classes split by columns across ranks.

    ``logits`` (N, K) holds this rank's columns; ``labels`` (N,) the target's column here, or −1
    where another rank holds it. The max is all-reduced without gradient (log-sum-exp does not
    depend on it), the sum of exponentials and the target logit with gradient.
    """
    logits = full_precision(logits)
    peak = logits.detach().max(dim=1).values
    if world > 1:
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    shifted = logits - peak[:, None]
    total = _sum_across_ranks(shifted.exp().sum(dim=1), world)
    held = labels >= 0
    target = shifted.gather(1, labels.clamp_min(0)[:, None]).squeeze(1)
    target = _sum_across_ranks(torch.where(held, target, torch.zeros_like(target)), world)
    return total.log() - target


class PartialFC(nn.Module):
    """A head from ``HEADS`` (any but ``center``) with its classes sharded over ranks and sampled.

    ``head`` names the margin head, ``**hyper`` are its keyword arguments. The shard is
    ``self.head.weight`` of shape (num_local, D), global classes ``[class_start, class_start +
    num_local)``; the first ``num_classes % world`` ranks hold one row more. ``sample_rate``
    (0, 1] is the fraction of this rank's classes scored per training step (An et al. 2021
    found 0.1 as accurate as 1); positives are always kept; eval mode scores all classes.
    ``last_sampled`` holds the global ids of the classes scored in the last step.

    ``forward(embeddings, labels)`` takes this rank's (B, D) raw embeddings and (B,) labels and
    returns the loss of the whole gathered batch, the same value on every rank. The gradient
    reaching ``embeddings`` is multiplied by the world size so that DDP's gradient averaging
    gives the backbone the global-batch gradient, as insightface does; single process: unchanged.
    """

    def __init__(
        self,
        *,
        embedding_size: int,
        num_classes: int,
        head: str = "arcface",
        sample_rate: float = 0.1,
        **hyper,
    ) -> None:
        super().__init__()
        if head not in HEADS or head == "center":
            names = ", ".join(name for name in HEADS if name != "center")
            raise ValueError(f"PartialFC head {head!r} is not shardable; choose one of {names}")
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        world, rank = _world()
        if num_classes < world:
            raise ValueError(f"num_classes={num_classes} is smaller than the world size {world}")
        base, extra = divmod(num_classes, world)
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        self.num_local = base + int(rank < extra)
        self.class_start = rank * base + min(rank, extra)
        self.sample_rate = sample_rate
        if "s" in hyper:  # "auto" is a function of all the classes, not of this rank's shard
            hyper = {**hyper, "s": resolve_scale(hyper["s"], num_classes)}
        self.head: ClassifierHead = HEADS[head](
            embedding_size=embedding_size, num_classes=self.num_local, **hyper
        )
        self.last_terms: dict[str, Tensor] = {}
        self.last_sampled: Tensor | None = None

    def param_groups(self) -> list[dict]:
        """Parameters with their own learning rate (those of the wrapped head)."""
        return self.head.param_groups()

    def magnitudes(self, embeddings: Tensor) -> Tensor:
        """Embedding magnitudes (B,), MagFace's quality score."""
        return embeddings.norm(dim=1)

    def _sample(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Indices (K,) of this rank's classes to score and ``labels`` remapped into them."""
        positive = torch.unique(labels[labels >= 0])
        wanted = max(int(self.sample_rate * self.num_local), positive.numel(), 1)
        priority = torch.rand(self.num_local, device=labels.device)
        priority[positive] = 2.0  # above any uniform draw: positives are always taken
        index = torch.topk(priority, wanted).indices.sort().values
        remap = torch.full((self.num_local,), -1, dtype=labels.dtype, device=labels.device)
        remap[index] = torch.arange(wanted, device=labels.device)
        return index, torch.where(labels >= 0, remap[labels.clamp_min(0)], labels)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Loss of the gathered batch: (B, D) raw embeddings, (B,) int64 labels -> scalar."""
        check_inputs(embeddings, labels, self.embedding_size, self.num_classes)
        world, _ = _world()
        local = _ScaleGrad.apply(embeddings, float(world)) if world > 1 else embeddings
        if world > 1:
            gathered = _GatherWithGrad.apply(local)
            all_labels, _ = _all_gather_rows(labels)
        else:
            gathered, all_labels = local, labels
        mine = (all_labels >= self.class_start) & (all_labels < self.class_start + self.num_local)
        shard_labels = torch.where(mine, all_labels - self.class_start, -1)
        index = None
        if self.training and self.sample_rate < 1.0:
            index, shard_labels = self._sample(shard_labels)
            self.last_sampled = index + self.class_start
        else:
            self.last_sampled = torch.arange(self.num_local, device=labels.device)
            self.last_sampled += self.class_start
        logits = self.head.logits(gathered, shard_labels, index)
        count = gathered.shape[0]
        ce = distributed_cross_entropy(logits, shard_labels, world).mean()
        # Per-sample terms on this rank's rows only, summed over ranks: the global batch mean.
        extra = {
            name: _sum_across_ranks(term.sum(), world) / count
            for name, term in self.head.regulariser(local, labels).items()
        }
        self.last_terms = {"ce": ce.detach(), **{k: v.detach() for k, v in extra.items()}}
        return ce + sum(extra.values()) if extra else ce


def ignore_shards_in_ddp(module: nn.Module) -> list[str]:
    """Tell DDP to neither broadcast nor average the class shards of ``module``'s PartialFCs.

    Call before DDP wraps ``module``; returns the parameter names it excluded.
    """
    names = [
        f"{prefix}.{name}" if prefix else name
        for prefix, sub in module.named_modules()
        if isinstance(sub, PartialFC)
        for name, _ in sub.named_parameters()
    ]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, names)
    return names
