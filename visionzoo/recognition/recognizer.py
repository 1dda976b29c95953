"""``Recognizer``: an embedding network plus the loss head it trains with, and the registered
recognition models (one per loss: ``model=arcface``, ``model=triplet``, ...).

The backbone alone is what inference, export and face-quality methods use: ``forward`` returns
the embedding. The head (a margin classifier such as ArcFace, or a pair/triplet loss) exists only
for training and is dropped by ``export.py``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from visionzoo.recognition.heads import HEADS
from visionzoo.recognition.metric_losses import METRIC_LOSSES
from visionzoo.recognition.models import create_backbone
from visionzoo.recognition.partial_fc import PartialFC
from visionzoo.registry import register_model

# Losses that need the P×K identity sampler (several images of each identity in a batch).
PAIR_BASED = frozenset(METRIC_LOSSES)
LOSSES: dict[str, type[nn.Module]] = {**HEADS, **METRIC_LOSSES}


class Recognizer(nn.Module):
    """Backbone (images (B, 3, H, W) → embeddings (B, D)) and training head.

    ``loss(embeddings, labels)`` is the head's loss; ``head_name`` says which one, and
    ``pair_based`` whether batches must hold several images per identity.
    """

    def __init__(self, *, backbone: nn.Module, head: nn.Module, head_name: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.head_name = head_name
        self.pair_based = head_name in PAIR_BASED

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(embeddings, labels)


def build_recognizer(
    head_name: str,
    *,
    num_classes: int,
    backbone: str = "mobilefacenet",
    embedding_size: int = 512,
    dropout: float = 0.0,
    pretrained_file: str | None = None,
    in_chans: int = 3,
    input_size: int = 112,
    head: dict[str, Any] | None = None,
    partial_fc: float | None = None,
) -> Recognizer:
    """A ``Recognizer`` with backbone ``backbone`` (``iresnet18|34|50|100``, ``mobilefacenet``
    or a timm name) and the loss ``head_name`` configured by ``head`` (its hyper-parameters).

    ``partial_fc`` (a sample rate in (0, 1]) shards a classifier head's class centres across DDP
    ranks and scores only that fraction of each rank's classes per step (Partial FC, An et al.
    2021), so hundreds of thousands of identities fit; ``None`` keeps the full classifier."""
    net = create_backbone(
        backbone,
        embedding_size=embedding_size,
        dropout=dropout,
        pretrained_file=pretrained_file,
        in_chans=in_chans,
        input_size=input_size,
    )
    kw = {"embedding_size": embedding_size, "num_classes": num_classes, **dict(head or {})}
    if partial_fc is not None:
        if head_name not in HEADS:
            raise ValueError(
                f"model.partial_fc is for classifier heads ({', '.join(sorted(HEADS))}); "
                f"{head_name!r} has no class centres: set model.partial_fc=null"
            )
        loss: nn.Module = PartialFC(head=head_name, sample_rate=partial_fc, **kw)
        loss.spec = {"head": head_name, "sample_rate": partial_fc, **kw}  # to re-shard under DDP
    else:
        loss = LOSSES[head_name](**kw)
    return Recognizer(backbone=net, head=loss, head_name=head_name)


def _register(head_name: str) -> None:
    def factory(**kwargs: Any) -> Recognizer:
        return build_recognizer(head_name, **kwargs)

    factory.__doc__ = f"A recognizer trained with the {head_name!r} loss (see build_recognizer)."
    register_model("recognition", head_name)(factory)


for _name in sorted(LOSSES):
    _register(_name)


class PixelEmbedding(nn.Module):
    """The raw-pixel baseline: a face's embedding is its pixels (B, 3·H·W), each image
    standardised to zero mean and unit variance, so cosine similarity is the normalised
    cross-correlation of the two aligned faces."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        flat = images.flatten(1).float()
        flat = flat - flat.mean(dim=1, keepdim=True)
        return flat / flat.std(dim=1, keepdim=True).clamp_min(1e-6)


@register_model("recognition", "raw_pixels", trainable=False)
def raw_pixels(**_: Any) -> Recognizer:
    """Metric-only baseline (``eval.py task=recognition model=raw_pixels data=...``): no
    learnt weights, embeddings are the standardised pixels."""
    return Recognizer(backbone=PixelEmbedding(), head=nn.Identity(), head_name="raw_pixels")
