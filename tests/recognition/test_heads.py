"""Recognition heads against pytorch-metric-learning 2.9 and the papers' formulas.

pml conventions (from its source): ``W`` is (D, C), so weights are copied as ``weight.T``;
ArcFace's margin is in degrees; NormalizedSoftmax takes a temperature ``1/s``; SphereFace and
L-Softmax compute cos(mθ) with the multiple-angle polynomial and ψ = (−1)^k cos(mθ) − 2k, and
SphereFace scales by ``‖x‖·scale`` (A-Softmax). pml's ArcFace fallback past θ = π − m is
``cos θ − m·sin m``, the same value as insightface's ``cos θ − sin(π − m)·m`` (they differ only
in ``<`` vs ``≤`` at the threshold itself), so inputs beyond the threshold are compared too.
pml has no MagFace, center loss or combined margin: those are checked against the papers'
formulas written out per sample below. All comparisons run in float64.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from pytorch_metric_learning import losses

from visionzoo.recognition.heads import (
    HEADS,
    ArcFaceHead,
    CenterLossHead,
    CombinedMarginHead,
    CosFaceHead,
    LSoftmaxHead,
    MagFaceHead,
    NormFaceHead,
    SoftmaxHead,
    SphereFaceHead,
)
from visionzoo.recognition.partial_fc import PartialFC, ignore_shards_in_ddp

D, C, B = 8, 10, 24
TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tensors here are tiny; on a busy 2-core box OpenMP threads only contend (10× slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _inputs(seed: int, norm: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=g, dtype=torch.float64) * norm
    return x, torch.randint(0, C, (B,), generator=g)


def _head(cls: type, **kw) -> nn.Module:
    torch.manual_seed(0)
    return cls(embedding_size=D, num_classes=C, **kw).double()


def _opposite_rows(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, n: int = 4) -> None:
    """Point the first ``n`` embeddings almost away from their class: θ close to π."""
    noise = 0.05 * torch.randn(n, D, dtype=x.dtype, generator=torch.Generator().manual_seed(9))
    direction = -weight[y[:n]].detach() / weight[y[:n]].detach().norm(dim=1, keepdim=True)
    x[:n] = 3.0 * (direction + noise)


def _against_pml(head: nn.Module, ref: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """Same loss and the same gradients w.r.t. embeddings and class weights."""
    ref.W.data = head.weight.detach().T.clone()
    ours_x, ref_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, theirs = head(ours_x, y), ref(ref_x, y)
    torch.testing.assert_close(ours, theirs, **TOL)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours_x.grad, ref_x.grad, **TOL)
    torch.testing.assert_close(head.weight.grad, ref.W.grad.T, **TOL)


def test_arcface_matches_pml_including_past_the_threshold() -> None:
    head = _head(ArcFaceHead, s=64.0, m=0.5)
    x, y = _inputs(1)
    _opposite_rows(x, y, head.weight)
    cos = nn.functional.cosine_similarity(x, head.weight[y].detach(), dim=1)
    assert (cos[:4] < math.cos(math.pi - 0.5)).all()  # the fallback branch is exercised
    ref = losses.ArcFaceLoss(C, D, margin=math.degrees(0.5), scale=64.0)
    _against_pml(head, ref, x, y)


def test_cosface_matches_pml() -> None:
    x, y = _inputs(2)
    _against_pml(_head(CosFaceHead, s=64.0, m=0.35), losses.CosFaceLoss(C, D), x, y)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_sphereface_a_softmax_matches_pml(m: int) -> None:
    # s=1 with the feature norm as scale is pml's (and the paper's) A-Softmax.
    x, y = _inputs(3 + m)
    head = _head(SphereFaceHead, s=1.0, m=float(m), scale_by_norm=True)
    _against_pml(head, losses.SphereFaceLoss(C, D, margin=m, scale=1.0), x, y)


def test_sphereface_normalised_matches_pml_on_unit_embeddings() -> None:
    # Our default normalises the embedding and scales by s; pml scales by ‖x‖·s, which equals
    # it on unit-norm inputs (the gradients differ there: ours has no radial component).
    x, y = _inputs(7)
    x = nn.functional.normalize(x, dim=1)
    head = _head(SphereFaceHead, s=30.0, m=4.0)
    ref = losses.SphereFaceLoss(C, D, margin=4, scale=30.0)
    ref.W.data = head.weight.detach().T.clone()
    torch.testing.assert_close(head(x, y), ref(x, y), **TOL)


def test_normface_matches_pml() -> None:
    x, y = _inputs(8)
    ref = losses.NormalizedSoftmaxLoss(C, D, temperature=1 / 20.0)
    _against_pml(_head(NormFaceHead, s=20.0), ref, x, y)


@pytest.mark.parametrize("m", [1, 2, 4])
def test_lsoftmax_matches_pml(m: int) -> None:
    x, y = _inputs(10 + m)
    ref = losses.LargeMarginSoftmaxLoss(C, D, margin=m, scale=1.0)
    _against_pml(_head(LSoftmaxHead, m=m), ref, x, y)


# ---- paper formulas, one sample and one class at a time ----


def _log_sum_exp(values: list[torch.Tensor]) -> torch.Tensor:
    peak = max(float(v.detach()) for v in values)
    return peak + torch.log(sum(torch.exp(v - peak) for v in values))


def _psi(theta: torch.Tensor, m1: float, m2: float | torch.Tensor) -> torch.Tensor:
    """cos(m1θ + m2) made monotonic: SphereFace's (−1)^k cos(t) − 2k on [kπ, (k+1)π]."""
    t = m1 * theta + m2
    k = 0
    while float(t.detach()) >= (k + 1) * math.pi:
        k += 1
    return (-1) ** k * torch.cos(t) - 2 * k


def _arc_target(cos: torch.Tensor, m: float | torch.Tensor, easy: bool) -> torch.Tensor:
    """ArcFace target with insightface's two ways of treating θ + m > π."""
    theta = torch.acos(cos)
    if easy:
        return torch.cos(theta + m) if cos > 0 else cos
    if float((theta + m).detach()) < math.pi:
        return torch.cos(theta + m)
    return cos - m * torch.sin(m if isinstance(m, torch.Tensor) else torch.tensor(m))


def _reference_combined(x, weight, y, *, s, m1, m2, m3, lam=0.0, easy=False) -> torch.Tensor:
    total = 0.0
    for i in range(len(y)):
        logits = []
        for j in range(weight.shape[0]):
            cos = torch.dot(x[i], weight[j]) / (x[i].norm() * weight[j].norm())
            if j == int(y[i]):
                if m1 == 1.0:
                    target = _arc_target(cos, m2, easy)
                else:
                    target = _psi(torch.acos(cos), m1, m2)
                cos = (lam * cos + target - m3) / (1 + lam)
            logits.append(s * cos)
        total = total + _log_sum_exp(logits) - logits[int(y[i])]
    return total / len(y)


@pytest.mark.parametrize(
    ("m1", "m2", "m3", "easy"),
    [
        (1.0, 0.3, 0.2, False),
        (1.0, 0.5, 0.0, True),
        (1.35, 0.0, 0.0, False),
        (2.0, 0.2, 0.1, False),
    ],
)
def test_combined_margin_matches_formula(m1: float, m2: float, m3: float, easy: bool) -> None:
    head = _head(CombinedMarginHead, s=16.0, m1=m1, m2=m2, m3=m3, easy_margin=easy)
    x, y = _inputs(20)
    _opposite_rows(x, y, head.weight)
    ref = _reference_combined(x, head.weight.detach(), y, s=16.0, m1=m1, m2=m2, m3=m3, easy=easy)
    torch.testing.assert_close(head(x, y), ref, **TOL)


def test_sphereface_annealing_matches_formula() -> None:
    head = _head(SphereFaceHead, s=10.0, m=4.0, lam=5.0)
    x, y = _inputs(21)
    ref = _reference_combined(x, head.weight.detach(), y, s=10.0, m1=4.0, m2=0.0, m3=0.0, lam=5.0)
    torch.testing.assert_close(head(x, y), ref, **TOL)


def _reference_magface(x, weight, y, s, l_a, u_a, l_m, u_m, lambda_g) -> torch.Tensor:
    """Meng et al. 2021, eq. 4-6, with the magnitude clamped to [l_a, u_a] as in their code."""
    total = 0.0
    for i in range(len(y)):
        a = torch.clamp(x[i].norm(), l_a, u_a)
        margin = l_m + (a - l_a) * (u_m - l_m) / (u_a - l_a)
        logits = []
        for j in range(weight.shape[0]):
            cos = torch.dot(x[i], weight[j]) / (x[i].norm() * weight[j].norm())
            logits.append(s * (_arc_target(cos, margin, False) if j == int(y[i]) else cos))
        g = 1 / a + a / u_a**2
        total = total + _log_sum_exp(logits) - logits[int(y[i])] + lambda_g * g
    return total / len(y)


def test_magface_matches_formula_with_gradients() -> None:
    head = _head(MagFaceHead)
    x, y = _inputs(30)
    _opposite_rows(x, y, head.weight)
    # Magnitudes below l_a, inside, and above u_a.
    x = nn.functional.normalize(x, dim=1) * torch.linspace(4.0, 140.0, B, dtype=x.dtype)[:, None]
    ours_x, ref_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = head(ours_x, y)
    ref = _reference_magface(ref_x, head.weight.detach(), y, 64.0, 10.0, 110.0, 0.45, 0.8, 35.0)
    torch.testing.assert_close(ours, ref, **TOL)
    torch.testing.assert_close(ours, head.last_terms["ce"] + head.last_terms["g"], **TOL)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(ours_x.grad, ref_x.grad, **TOL)
    torch.testing.assert_close(head.magnitudes(x), x.norm(dim=1))


def test_center_loss_matches_formula() -> None:
    head = _head(CenterLossHead, lam=0.1, center_lr=0.3)
    x, y = _inputs(40)
    ours_x, ref_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = head(ours_x, y)
    w, b, centres = head.weight.detach(), head.bias.detach(), head.centers.detach()
    ce, centre = 0.0, 0.0
    for i in range(B):
        logits = [torch.dot(ref_x[i], w[j]) + b[j] for j in range(C)]
        ce = ce + _log_sum_exp(logits) - logits[int(y[i])]
        centre = centre + sum((ref_x[i, d] - centres[int(y[i]), d]) ** 2 for d in range(D))
    ref = ce / B + 0.1 / 2 * centre / B
    torch.testing.assert_close(ours, ref, **TOL)
    torch.testing.assert_close(head.last_terms["center"], 0.05 * centre / B, **TOL)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(ours_x.grad, ref_x.grad, **TOL)
    (group,) = head.param_groups()
    assert group["params"][0] is head.centers and group["lr"] == 0.3
    assert group["weight_decay"] == 0.0


def test_softmax_matches_torch_cross_entropy() -> None:
    head = _head(SoftmaxHead)
    x, y = _inputs(41)
    linear = nn.Linear(D, C).double()
    linear.load_state_dict({"weight": head.weight.detach(), "bias": head.bias.detach()})
    torch.testing.assert_close(head(x, y), nn.CrossEntropyLoss()(linear(x), y), **TOL)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_head_trains(name: str) -> None:
    """Interface contract: finite scalar, gradients for every parameter, loss falls."""
    torch.manual_seed(0)
    head = HEADS[name](embedding_size=D, num_classes=C)
    assert head.weight.shape == (C, D)
    x = torch.randn(B, D, requires_grad=True)
    y = torch.arange(B) % C
    opt = torch.optim.Adam([x, *head.parameters()], lr=0.05)
    first = None
    for _ in range(10):
        loss = head(x, y)
        assert loss.dim() == 0 and torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in head.parameters())
        opt.step()
        first = loss.item() if first is None else first
    assert head(x, y).item() < first


@pytest.mark.parametrize(
    ("kwargs", "inputs", "message"),
    [
        ({}, (torch.zeros(2, D + 1), torch.zeros(2, dtype=torch.long)), "embeddings must be"),
        ({}, (torch.zeros(2, D), torch.zeros(2, dtype=torch.int32)), "int64"),
        ({}, (torch.zeros(2, D), torch.tensor([0, C])), "check num_classes"),
    ],
)
def test_bad_inputs_raise(kwargs, inputs, message) -> None:
    with pytest.raises(ValueError, match=message):
        ArcFaceHead(embedding_size=D, num_classes=C, **kwargs)(*inputs)


def test_bad_options_raise() -> None:
    with pytest.raises(ValueError, match="not shardable"):
        PartialFC(embedding_size=D, num_classes=C, head="center")
    with pytest.raises(ValueError, match="sample_rate"):
        PartialFC(embedding_size=D, num_classes=C, sample_rate=0.0)
    with pytest.raises(ValueError, match="positive integer"):
        LSoftmaxHead(embedding_size=D, num_classes=C, m=2.5)
    with pytest.raises(ValueError, match="'auto'"):
        ArcFaceHead(embedding_size=D, num_classes=C, s="big")


@pytest.mark.parametrize("classes, expected", [(30, 4.762), (40, 5.181), (85742, 16.064)])
def test_auto_scale_is_adacos_fixed_scale(classes: int, expected: float) -> None:
    """``s="auto"`` is AdaCos's fixed scale √2·ln(C − 1) (values worked by hand), used by every
    angular-margin head."""
    for head in (ArcFaceHead, CosFaceHead, SphereFaceHead, NormFaceHead, MagFaceHead):
        assert head(embedding_size=D, num_classes=classes, s="auto").s == pytest.approx(
            expected, abs=1e-3
        )


# ---- Partial-FC ----


@pytest.mark.parametrize("kind", ["arcface", "magface", "sphereface", "lsoftmax", "softmax"])
def test_partial_fc_single_process_is_the_full_head(kind: str) -> None:
    full = _head(HEADS[kind])
    pfc = PartialFC(embedding_size=D, num_classes=C, head=kind, sample_rate=1.0).double()
    pfc.head.load_state_dict(full.state_dict())
    x, y = _inputs(50)
    x = x * 5  # magnitudes inside MagFace's [l_a, u_a]
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, ref = pfc(a, y), full(b, y)
    torch.testing.assert_close(ours, ref, **TOL)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(a.grad, b.grad, **TOL)
    torch.testing.assert_close(pfc.head.weight.grad, full.weight.grad, **TOL)


def test_partial_fc_sampling_scores_a_subset_with_all_positives() -> None:
    full = _head(CosFaceHead)
    pfc = PartialFC(embedding_size=D, num_classes=C, head="cosface", sample_rate=0.3).double()
    pfc.head.load_state_dict(full.state_dict())
    x, _ = _inputs(51)
    y = torch.tensor([1, 7, 7, 1] * (B // 4))
    loss = pfc(x, y)
    sampled = pfc.last_sampled
    assert set(y.tolist()) <= set(sampled.tolist()) and len(sampled) == 3
    # The loss is the full head's over the sampled classes only.
    sub = _head(CosFaceHead)
    sub.weight.data = full.weight.detach()[sampled]
    remapped = torch.searchsorted(sampled, y)
    torch.testing.assert_close(loss, sub(x, remapped), **TOL)
    pfc.eval()
    pfc(x, y)
    assert len(pfc.last_sampled) == C


# Rank 0 holds 7 embeddings, rank 1 holds 5; 7 classes split 4 + 3.
PFC_CLASSES, PFC_SPLIT = 7, (7, 5)


class _Net(nn.Module):
    def __init__(self, fc: nn.Module) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.backbone = nn.Linear(6, D).double()
        self.fc = fc

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(images) * 4.0, labels)


def _pfc_data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(60)
    n = sum(PFC_SPLIT)
    return {
        "x": torch.randn(n, D, generator=g, dtype=torch.float64) * 20,
        "images": torch.randn(n, 6, generator=g, dtype=torch.float64),
        "y": torch.randint(0, PFC_CLASSES, (n,), generator=g),
        "w": torch.randn(PFC_CLASSES, D, generator=g, dtype=torch.float64),
    }


def _pfc_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        data = _pfc_data()
        rows = slice(sum(PFC_SPLIT[:rank]), sum(PFC_SPLIT[: rank + 1]))
        out: dict = {}
        for kind in ("arcface", "magface"):
            pfc = PartialFC(
                embedding_size=D, num_classes=PFC_CLASSES, head=kind, sample_rate=1.0
            ).double()
            pfc.head.weight.data = data["w"][pfc.class_start : pfc.class_start + pfc.num_local]
            x = data["x"][rows].clone().requires_grad_()
            loss = pfc(x, data["y"][rows])
            loss.backward()
            out[kind] = (loss.item(), x.grad, pfc.head.weight.grad, pfc.class_start)
        fc = PartialFC(embedding_size=D, num_classes=PFC_CLASSES, sample_rate=1.0).double()
        fc.head.weight.data = data["w"][fc.class_start : fc.class_start + fc.num_local]
        net = _Net(fc)
        assert ignore_shards_in_ddp(net) == ["fc.head.weight"]
        ddp = nn.parallel.DistributedDataParallel(net)
        ddp(data["images"][rows], data["y"][rows]).backward()
        out["ddp"] = (net.backbone.weight.grad, fc.head.weight.grad)
        sampler = PartialFC(embedding_size=D, num_classes=PFC_CLASSES, sample_rate=0.3)
        sampler(data["x"][rows].float(), data["y"][rows])
        out["sampled"] = (sampler.last_sampled, sampler.class_start, sampler.num_local)
        (Path(out_dir) / f"rank{rank}.pkl").write_bytes(pickle.dumps(out))
    finally:
        dist.destroy_process_group()


def test_partial_fc_two_processes_match_full_softmax(tmp_path: Path) -> None:
    """gloo, 2 ranks, sample_rate=1: every rank's loss is the full head's on the whole batch;
    embedding gradients are the full head's times the world size (DDP then averages them), and a
    DDP-wrapped backbone gets exactly the single-process gradient."""
    # fork, not spawn: a spawned child re-imports visionzoo (every family, ~5 s); the workers
    # set one thread before any op, so no OpenMP pool is inherited mid-use.
    mp.start_processes(
        _pfc_worker,
        args=(2, str(tmp_path / "init"), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    got = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(2)]
    data = _pfc_data()
    for kind in ("arcface", "magface"):
        full = HEADS[kind](embedding_size=D, num_classes=PFC_CLASSES).double()
        full.weight.data = data["w"].clone()
        x = data["x"].clone().requires_grad_()
        loss = full(x, data["y"])
        loss.backward()
        for rank, (rank_loss, x_grad, w_grad, start) in enumerate(g[kind] for g in got):
            rows = slice(sum(PFC_SPLIT[:rank]), sum(PFC_SPLIT[: rank + 1]))
            assert rank_loss == pytest.approx(loss.item(), rel=1e-9)
            torch.testing.assert_close(x_grad, 2 * x.grad[rows], **TOL)
            torch.testing.assert_close(w_grad, full.weight.grad[start : start + len(w_grad)], **TOL)
    full = ArcFaceHead(embedding_size=D, num_classes=PFC_CLASSES).double()
    full.weight.data = data["w"].clone()
    net = _Net(full)
    net(data["images"], data["y"]).backward()
    torch.testing.assert_close(got[0]["ddp"][0], net.backbone.weight.grad, **TOL)
    torch.testing.assert_close(got[1]["ddp"][0], net.backbone.weight.grad, **TOL)
    shards = torch.cat([got[0]["ddp"][1], got[1]["ddp"][1]])
    torch.testing.assert_close(shards, full.weight.grad, **TOL)
    sampled = set()
    for g in got:
        ids, start, count = g["sampled"]
        assert all(start <= i < start + count for i in ids.tolist())
        sampled |= set(ids.tolist())
    assert set(data["y"].tolist()) <= sampled
