"""Classification heads for face recognition: softmax-family losses over a learnt class matrix.

Every head has one interface, which the recognition task module relies on::

    head = HEADS[name](embedding_size=D, num_classes=C, **hyper)
    loss = head(embeddings, labels)   # (B, D) raw embeddings, (B,) int64 -> scalar
    head.last_terms                   # detached loss parts to log, e.g. {"ce": ..., "center": ...}
    head.param_groups()               # parameters that need their own learning rate

The angular heads follow insightface's combined margin ``s·(cos(m1·θ + m2) − m3)`` (ArcFace:
Deng et al. 2019; CosFace: Wang et al. 2018; SphereFace: Liu et al. 2017). Their class matrix
is ``weight`` of shape (C, D), normalised in ``forward``. ``logits(embeddings, labels, index)``
exposes the margin logits over a subset of classes, which ``partial_fc.PartialFC`` uses to
shard and sample the classes across ranks.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

# acos has an infinite slope at ±1; clamping inside keeps gradients finite for an embedding that
# coincides with its class centre.
_ACOS_EPS = 1e-7


def _acos(cos: Tensor) -> Tensor:
    return torch.acos(cos.clamp(-1.0 + _ACOS_EPS, 1.0 - _ACOS_EPS))


def full_precision(x: Tensor) -> Tensor:
    """``x`` in at least float32: half-precision cosines (autocast) are too coarse for acos and
    for a softmax over many classes."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def combined_margin_target(
    cos: Tensor,
    *,
    m1: float = 1.0,
    m2: float | Tensor = 0.0,
    m3: float = 0.0,
    easy_margin: bool = False,
) -> Tensor:
    """Target-class logit ``cos(m1·θ + m2) − m3`` before scaling, for ``cos = cos θ`` of shape (N,).

    ``m2`` may be a per-sample (N,) tensor (MagFace). Where ``θ + m2`` passes π the curve stops
    decreasing; the extension follows insightface: with ``m1 = 1`` either its ``easy_margin``
    (margin only where cos θ > 0) or the default ``cos θ − m2·sin m2`` below the threshold
    ``cos θ ≤ cos(π − m2)``; with ``m1 ≠ 1`` SphereFace's monotonic ψ (Liu et al. 2017, eq. 6):
    ``(−1)^k cos(t) − 2k`` with ``t = m1·θ + m2`` and ``k = ⌊t/π⌋``. Gradients flow through the
    margin, including into a tensor ``m2``.
    """
    if m1 == 1.0 and not isinstance(m2, Tensor) and m2 == 0.0:
        return cos - m3
    theta = _acos(cos)
    if m1 == 1.0:
        m2 = torch.as_tensor(m2, dtype=cos.dtype, device=cos.device)
        shifted = torch.cos(theta + m2)
        if easy_margin:
            out = torch.where(cos > 0, shifted, cos)
        else:
            # sin(π − m) = sin m, so this is insightface's `cos − mm` with mm = sin(π − m)·m.
            out = torch.where(cos > torch.cos(math.pi - m2), shifted, cos - m2 * torch.sin(m2))
        return out - m3
    t = m1 * theta + m2
    k = torch.floor(t.detach() / math.pi)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * torch.cos(t) - 2.0 * k - m3


def _replace_targets(logits: Tensor, labels: Tensor, values: Tensor, rows: Tensor) -> Tensor:
    """``logits`` (N, C) with ``values`` written at ``(rows, labels[rows])``, out of place."""
    out = logits.clone()
    out[rows, labels[rows]] = values
    return out


def _positive_rows(labels: Tensor) -> Tensor:
    """Rows whose class is among the columns (label ≥ 0); −1 marks a class held elsewhere."""
    return torch.nonzero(labels >= 0, as_tuple=True)[0]


def adacos_scale(num_classes: int) -> float:
    """The fixed scale of AdaCos (Zhang et al., CVPR 2019), ``√2·ln(C − 1)``: the logit scale at
    which the class probability still changes fastest over the angles training sees. For tens of
    classes it is about 5, where insightface's 64 (tuned on 85k identities) saturates the softmax
    from the first step and training barely moves; at least 1."""
    return max(math.sqrt(2.0) * math.log(max(num_classes - 1, 1)), 1.0)


def resolve_scale(s: float | str, num_classes: int) -> float:
    """``s`` itself, or ``adacos_scale(num_classes)`` for ``s="auto"``."""
    if s == "auto":
        return adacos_scale(num_classes)
    if isinstance(s, str):
        raise ValueError(f"s must be a number or 'auto', got {s!r}")
    _check_positive("s", s)
    return float(s)


def _check_positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def check_inputs(embeddings: Tensor, labels: Tensor, embedding_size: int, num_classes: int) -> None:
    """Raise ValueError for (B, D) embeddings / (B,) labels that do not fit a head."""
    if embeddings.dim() != 2 or embeddings.shape[1] != embedding_size:
        raise ValueError(f"embeddings must be (B, {embedding_size}), got {tuple(embeddings.shape)}")
    if labels.shape != embeddings.shape[:1] or labels.dtype != torch.int64:
        raise ValueError(
            f"labels must be int64 of shape ({embeddings.shape[0]},), "
            f"got {labels.dtype} {tuple(labels.shape)}"
        )
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got "
            f"[{int(labels.min())}, {int(labels.max())}]; check num_classes"
        )


class ClassifierHead(nn.Module):
    """Base class: cross-entropy over ``logits`` plus an optional per-sample ``regulariser``.

    Subclasses define ``logits``; labels passed to it index the chosen classes (``index``), and
    −1 marks a sample whose class is not among them (it then gets no margin), as in Partial-FC.
    """

    def __init__(self, *, embedding_size: int, num_classes: int) -> None:
        super().__init__()
        if embedding_size < 1 or num_classes < 1:
            raise ValueError(
                f"embedding_size and num_classes must be >= 1, got {embedding_size}, {num_classes}"
            )
        self.embedding_size = embedding_size
        self.num_classes = num_classes
        self.last_terms: dict[str, Tensor] = {}

    def logits(self, embeddings: Tensor, labels: Tensor, index: Tensor | None = None) -> Tensor:
        """(N, D) embeddings, (N,) labels into ``index`` (or all classes) -> (N, K) logits."""
        raise NotImplementedError

    def regulariser(self, embeddings: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Per-sample (N,) extra loss terms, already weighted, by name; none by default."""
        return {}

    def param_groups(self) -> list[dict]:
        """Optimizer groups for parameters with their own learning rate; none by default."""
        return []

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Mean loss over the batch: (B, D) raw embeddings, (B,) int64 labels -> scalar."""
        check_inputs(embeddings, labels, self.embedding_size, self.num_classes)
        ce = F.cross_entropy(self.logits(embeddings, labels), labels)
        extra = {name: term.mean() for name, term in self.regulariser(embeddings, labels).items()}
        self.last_terms = {"ce": ce.detach(), **{k: v.detach() for k, v in extra.items()}}
        return ce + sum(extra.values()) if extra else ce


class CombinedMarginHead(ClassifierHead):
    """Margin softmax with logits ``s·(cos(m1·θ_y + m2) − m3)`` for the true class, ``s·cos θ_j``
    for the others (insightface's combined margin); θ is the angle between the embedding and the
    class row of ``weight`` (C, D). Defaults are ArcFace's.

    ``scale_by_norm`` multiplies the logits by the embedding norm as well, the original A-Softmax
    form of SphereFace (then ``s = 1`` is the paper's). Weights start as N(0, 1), as in
    pytorch-metric-learning: the rows are normalised, so their scale does not change the loss,
    but it sets how fast Adam turns them (its steps are about ``lr`` per element whatever the
    scale). From insightface's N(0, 0.01) each AdamW step at lr 1e-3 moved them by up to 10 %, and
    ArcFace on AT&T ended at 0.860 where the same backbone with pml's ArcFaceLoss reached 0.89.
    """

    def __init__(
        self,
        *,
        embedding_size: int,
        num_classes: int,
        s: float | str = 64.0,
        m1: float = 1.0,
        m2: float = 0.5,
        m3: float = 0.0,
        easy_margin: bool = False,
        scale_by_norm: bool = False,
    ) -> None:
        super().__init__(embedding_size=embedding_size, num_classes=num_classes)
        _check_positive("m1", m1)
        if m2 < 0 or m3 < 0:
            raise ValueError(f"margins m2, m3 must be >= 0, got {m2}, {m3}")
        self.s = resolve_scale(s, num_classes)
        self.m1, self.m2, self.m3 = m1, m2, m3
        self.easy_margin = easy_margin
        self.scale_by_norm = scale_by_norm
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=1.0)

    def margins(self, embeddings: Tensor) -> float | Tensor:
        """The additive angular margin m2, a float or per-sample (N,) tensor."""
        return self.m2

    def target(self, cos: Tensor, m2: float | Tensor) -> Tensor:
        """Unscaled target logit from the target cosine (N,)."""
        return combined_margin_target(
            cos, m1=self.m1, m2=m2, m3=self.m3, easy_margin=self.easy_margin
        )

    def logits(self, embeddings: Tensor, labels: Tensor, index: Tensor | None = None) -> Tensor:
        weight = self.weight if index is None else self.weight[index]
        cos = full_precision(F.linear(F.normalize(embeddings, dim=1), F.normalize(weight, dim=1)))
        rows = _positive_rows(labels)
        m2 = self.margins(embeddings)
        if isinstance(m2, Tensor):
            m2 = m2[rows]
        logits = _replace_targets(cos, labels, self.target(cos[rows, labels[rows]], m2), rows)
        scale = self.s * embeddings.norm(dim=1, keepdim=True) if self.scale_by_norm else self.s
        return logits * scale


class ArcFaceHead(CombinedMarginHead):
    """ArcFace (Deng et al. 2019): additive angular margin ``s·cos(θ_y + m)``; the paper's s=64,
    m=0.5, with insightface's fallback past θ = π − m."""

    def __init__(
        self,
        *,
        embedding_size: int,
        num_classes: int,
        s: float | str = 64.0,
        m: float = 0.5,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(
            embedding_size=embedding_size,
            num_classes=num_classes,
            s=s,
            m2=m,
            easy_margin=easy_margin,
        )


class CosFaceHead(CombinedMarginHead):
    """CosFace (Wang et al. 2018): additive cosine margin ``s·(cos θ_y − m)``. m=0.35 and s=64 are
    the paper's best (sec. 4); insightface's arcface_torch configs use m=0.4."""

    def __init__(
        self, *, embedding_size: int, num_classes: int, s: float | str = 64.0, m: float = 0.35
    ) -> None:
        super().__init__(embedding_size=embedding_size, num_classes=num_classes, s=s, m2=0.0, m3=m)


class SphereFaceHead(CombinedMarginHead):
    """SphereFace (Liu et al. 2017): multiplicative angular margin ψ(θ) = (−1)^k cos(mθ) − 2k.

    By default on normalised embeddings with scale ``s`` (insightface's m1 margin); with
    ``scale_by_norm=True, s=1`` it is the paper's A-Softmax ``‖x‖·ψ(θ)``. ``lam`` mixes in the
    plain cosine, ``(lam·cos θ + ψ(θ)) / (1 + lam)``, the paper's annealing aid (set it on the
    module to anneal; 0 = pure ψ). m=4 is the paper's.
    """

    def __init__(
        self,
        *,
        embedding_size: int,
        num_classes: int,
        s: float | str = 64.0,
        m: float = 4.0,
        lam: float = 0.0,
        scale_by_norm: bool = False,
    ) -> None:
        super().__init__(
            embedding_size=embedding_size,
            num_classes=num_classes,
            s=s,
            m1=m,
            m2=0.0,
            scale_by_norm=scale_by_norm,
        )
        self.lam = lam

    def target(self, cos: Tensor, m2: float | Tensor) -> Tensor:
        return (self.lam * cos + super().target(cos, m2)) / (1.0 + self.lam)


class NormFaceHead(CombinedMarginHead):
    """NormFace (Wang et al. 2017): softmax over ``s·cos θ`` with normalised features and weights,
    no margin. s=20 equals pytorch-metric-learning's default temperature 0.05."""

    def __init__(self, *, embedding_size: int, num_classes: int, s: float | str = 20.0) -> None:
        super().__init__(
            embedding_size=embedding_size, num_classes=num_classes, s=s, m2=0.0, m3=0.0
        )


class MagFaceHead(CombinedMarginHead):
    """MagFace (Meng et al. 2021): ArcFace with a margin that grows with the embedding magnitude
    ``a = ‖x‖`` (clamped to [l_a, u_a]) plus the regulariser ``λ_g·g(a)``, ``g(a) = 1/a + a/u_a²``
    (eq. 4-6). The margin ``m(a)`` is linear from l_m at l_a to u_m at u_a; defaults are the
    paper's. The magnitude is the face-quality score: ``magnitudes(embeddings)``.
    """

    def __init__(
        self,
        *,
        embedding_size: int,
        num_classes: int,
        s: float | str = 64.0,
        l_a: float = 10.0,
        u_a: float = 110.0,
        l_m: float = 0.45,
        u_m: float = 0.8,
        lambda_g: float = 35.0,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(
            embedding_size=embedding_size,
            num_classes=num_classes,
            s=s,
            m2=l_m,
            easy_margin=easy_margin,
        )
        if not 0 < l_a < u_a or not 0 <= l_m <= u_m:
            raise ValueError(
                f"MagFace needs 0 < l_a < u_a and 0 <= l_m <= u_m, got l_a={l_a}, u_a={u_a}, "
                f"l_m={l_m}, u_m={u_m}"
            )
        self.l_a, self.u_a, self.l_m, self.u_m = l_a, u_a, l_m, u_m
        self.lambda_g = lambda_g

    @staticmethod
    def magnitudes(embeddings: Tensor) -> Tensor:
        """Unclamped embedding magnitudes ``‖x‖`` (B,), MagFace's quality score."""
        return embeddings.norm(dim=1)

    def _clamped(self, embeddings: Tensor) -> Tensor:
        return self.magnitudes(embeddings).clamp(self.l_a, self.u_a)

    def margins(self, embeddings: Tensor) -> Tensor:
        a = self._clamped(embeddings)
        return (self.u_m - self.l_m) / (self.u_a - self.l_a) * (a - self.l_a) + self.l_m

    def regulariser(self, embeddings: Tensor, labels: Tensor) -> dict[str, Tensor]:
        a = self._clamped(embeddings)
        return {"g": self.lambda_g * (1.0 / a + a / self.u_a**2)}


class SoftmaxHead(ClassifierHead):
    """Plain softmax: a linear classifier ``x·Wᵀ + b`` (``weight`` (C, D), ``bias`` (C,)) and
    cross-entropy. Initialised like ``nn.Linear``."""

    def __init__(self, *, embedding_size: int, num_classes: int) -> None:
        super().__init__(embedding_size=embedding_size, num_classes=num_classes)
        linear = nn.Linear(embedding_size, num_classes)
        self.weight = linear.weight
        self.bias = linear.bias

    def logits(self, embeddings: Tensor, labels: Tensor, index: Tensor | None = None) -> Tensor:
        if index is None:
            return F.linear(embeddings, self.weight, self.bias)
        return F.linear(embeddings, self.weight[index], self.bias[index])


class LSoftmaxHead(ClassifierHead):
    """L-Softmax (Liu et al. 2016): the true-class logit ``‖W_y‖‖x‖·ψ(θ_y)`` with
    ψ(θ) = (−1)^k cos(mθ) − 2k (eq. 6), the others ``W_j·x``; no bias, weights not normalised.
    ``lam`` gives the paper's annealed ``(lam·cos θ + ψ(θ)) / (1 + lam)``; 0 = pure ψ.
    """

    def __init__(
        self, *, embedding_size: int, num_classes: int, m: int = 4, lam: float = 0.0
    ) -> None:
        super().__init__(embedding_size=embedding_size, num_classes=num_classes)
        if int(m) != m or m < 1:
            raise ValueError(f"L-Softmax margin m must be a positive integer, got {m}")
        self.m = int(m)
        self.lam = lam
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        # nn.Linear's default init: the norms of the rows matter here, unlike in the margin heads.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def logits(self, embeddings: Tensor, labels: Tensor, index: Tensor | None = None) -> Tensor:
        weight = self.weight if index is None else self.weight[index]
        norms = embeddings.norm(dim=1, keepdim=True) * weight.norm(dim=1)
        cos = full_precision(F.linear(F.normalize(embeddings, dim=1), F.normalize(weight, dim=1)))
        rows = _positive_rows(labels)
        cos_y = cos[rows, labels[rows]]
        target = (self.lam * cos_y + combined_margin_target(cos_y, m1=float(self.m))) / (
            1.0 + self.lam
        )
        return _replace_targets(cos, labels, target, rows) * norms


class CenterLossHead(SoftmaxHead):
    """Softmax plus center loss (Wen et al. 2016, eq. 5): ``CE + λ/2·mean_i ‖x_i − c_{y_i}‖²``.

    The centres ``centers`` (C, D) are learnt by the optimizer at their own rate ``center_lr``
    (the paper's α = 0.5; no weight decay), exposed through ``param_groups``. The batch mean
    follows the paper's Caffe layer. λ=0.003 is the paper's face setting. Centres start N(0, 1).
    """

    def __init__(
        self,
        *,
        embedding_size: int,
        num_classes: int,
        lam: float = 0.003,
        center_lr: float = 0.5,
    ) -> None:
        super().__init__(embedding_size=embedding_size, num_classes=num_classes)
        _check_positive("center_lr", center_lr)
        self.lam = lam
        self.center_lr = center_lr
        self.centers = nn.Parameter(torch.randn(num_classes, embedding_size))

    def regulariser(self, embeddings: Tensor, labels: Tensor) -> dict[str, Tensor]:
        return {"center": 0.5 * self.lam * (embeddings - self.centers[labels]).pow(2).sum(dim=1)}

    def param_groups(self) -> list[dict]:
        return [{"params": [self.centers], "lr": self.center_lr, "weight_decay": 0.0}]


HEADS: dict[str, type[ClassifierHead]] = {
    "arcface": ArcFaceHead,
    "cosface": CosFaceHead,
    "sphereface": SphereFaceHead,
    "combined": CombinedMarginHead,
    "normface": NormFaceHead,
    "lsoftmax": LSoftmaxHead,
    "softmax": SoftmaxHead,
    "center": CenterLossHead,
    "magface": MagFaceHead,
}
