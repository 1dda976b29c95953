"""YOLOX: published sizes, SimOTA assignment, training, empty targets, L1 switch, tracing."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from det_helpers import blob_batch, overfit
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import box_iou

from visionzoo.detection.export import DenseOutputs
from visionzoo.detection.models.yolox import YOLOX, simota_assign

# Megvii's model table, 80 classes: (size, input px, params M, GFLOPs). Its GFLOPs are thop's
# count × 2, and thop also counts 2 ops per BatchNorm output, so the table holds 2·MACs of the
# convolutions plus 4 per BatchNorm output element.
PUBLISHED = [
    ("nano", 416, 0.91, 1.08),
    ("tiny", 416, 5.06, 6.45),
    ("s", 640, 8.97, 26.8),
    ("m", 640, 25.3, 73.8),
    ("l", 640, 54.2, 155.6),
    ("x", 640, 99.1, 281.9),
]


@pytest.fixture(autouse=True)
def _one_thread():
    """These tiny convolutions gain nothing from threads, which only cost on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _count(size: str, px: int) -> tuple[float, float, float]:
    """Params (M), convolution GFLOPs (2·MACs) and BatchNorm output elements (G) of predict_raw,
    on the meta device so even yolox-x costs no compute."""
    with torch.device("meta"):
        model = YOLOX(size=size, num_classes=80).eval()
    bn_elements = []
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.register_forward_hook(lambda _m, _i, out: bn_elements.append(out.numel()))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.predict_raw(torch.zeros(1, 3, px, px, device="meta"))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return params, counter.get_total_flops() / 1e9, sum(bn_elements) / 1e9


@pytest.mark.parametrize(("size", "px", "params_m", "gflops"), PUBLISHED)
def test_published_params_and_gflops(size: str, px: int, params_m: float, gflops: float) -> None:
    params, conv_gflops, bn_g = _count(size, px)
    assert params == pytest.approx(params_m, rel=0.01)
    assert conv_gflops + 4 * bn_g == pytest.approx(gflops, rel=0.01)
    # FlopCounterMode alone (convolutions only): nano 1.045 at 416 px (−3.2 %; 2.47 at 640 px,
    # 2.55 with the BatchNorm term), tiny 6.41, s 26.69, m 73.53, l 155.29, x 281.41.
    assert conv_gflops == pytest.approx(gflops, rel=0.035)


def _grid(h: int, w: int, stride: float) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    centres = (torch.stack((xs, ys), -1).reshape(-1, 2).float() + 0.5) * stride
    return centres, torch.full((h * w,), float(stride))


def test_simota_candidates_and_dynamic_k() -> None:
    """One 24×16 box on an 8×8 grid of stride 8: centres at 4, 12, 20, ... px. Inside the box:
    x ∈ {4, 12, 20}, y ∈ {4, 12} (6 points); within 2.5 strides (20 px) of its centre (14, 10):
    x, y ∈ {4, 12, 20, 28} (16 points), which contain the box's points."""
    centres, strides = _grid(8, 8, 8)
    gt = torch.tensor([[2.0, 2.0, 26.0, 18.0]])
    in_box = (centres[:, 0] < 26) & (centres[:, 1] < 18)
    region = (centres < 36).all(1)
    scores = torch.full((64, 2), 0.5)

    # perfect boxes everywhere: k = top-10 IoUs summed = 10, the 6 in-box points first, then 4
    # more from the centre region; nothing outside the region
    fg, idx, iou = simota_assign(gt.expand(64, 4), scores, centres, strides, gt, torch.tensor([1]))
    assert fg.sum() == 10 and not (fg & ~region).any() and (fg | ~in_box).all()
    assert (idx == 0).all() and torch.allclose(iou, torch.ones(10))

    # every prediction shifted right by half the box's width, IoU 1/3: k = ⌊10 · 1/3⌋ = 3, all
    # inside the box
    shifted = gt + torch.tensor([[12.0, 0.0, 12.0, 0.0]])
    assert box_iou(shifted, gt).item() == pytest.approx(1 / 3)
    fg, _, iou = simota_assign(
        shifted.expand(64, 4), scores, centres, strides, gt, torch.tensor([1])
    )
    assert fg.sum() == 3 and (fg <= in_box).all()
    assert torch.allclose(iou, torch.full((3,), 1 / 3))


def test_simota_contested_point_goes_to_the_cheaper_box() -> None:
    """Boxes a = [0, 24]² and b = [8, 32]² share the points at 12 and 20 px. Every point predicts
    a except (20, 20), which predicts b: a wants 10 points (k = 10), b wants 3 (1 + 9 × 2/7);
    (20, 20) costs less for b and is b's; a keeps its eight other in-box points."""
    centres, strides = _grid(8, 8, 8)
    gts = torch.tensor([[0.0, 0.0, 24.0, 24.0], [8.0, 8.0, 32.0, 32.0]])
    contested = 2 * 8 + 2  # row-major index of (20, 20)
    preds = gts[0].repeat(64, 1)
    preds[contested] = gts[1]
    fg, idx, iou = simota_assign(
        preds, torch.full((64, 2), 0.5), centres, strides, gts, torch.tensor([0, 1])
    )
    owner = torch.full((64,), -1)
    owner[fg] = idx
    assert owner[contested] == 1 and iou[fg.nonzero()[:, 0] == contested].item() == 1.0
    in_a = (centres < 24).all(1)
    in_a[contested] = False
    assert (owner[in_a] == 0).all()
    assert fg.sum() <= 10 + 3 - 1  # at least the contested point was claimed twice


def _reference_simota(boxes, scores, centres, strides, gts, labels, radius=2.5, topk=10):
    """Loop-by-loop restatement of SimOTA: candidates, cost with F.binary_cross_entropy, per-GT
    top-k, ties for a point broken by the lowest cost. Returns {point: gt}."""
    n, g = len(boxes), len(gts)
    in_box = torch.zeros(g, n, dtype=torch.bool)
    in_ctr = torch.zeros(g, n, dtype=torch.bool)
    for j, (x1, y1, x2, y2) in enumerate(gts.tolist()):
        for i, ((cx, cy), s) in enumerate(zip(centres.tolist(), strides.tolist(), strict=True)):
            dx, dy = abs(cx - (x1 + x2) / 2), abs(cy - (y1 + y2) / 2)
            in_box[j, i] = x1 < cx < x2 and y1 < cy < y2
            in_ctr[j, i] = dx < radius * s and dy < radius * s
    cand = (in_box | in_ctr).any(0).nonzero()[:, 0]
    ious = box_iou(gts, boxes[cand])
    cost = torch.zeros(g, len(cand))
    for j in range(g):
        onehot = F.one_hot(labels[j], scores.shape[1]).float().expand(len(cand), -1)
        bce = F.binary_cross_entropy(scores[cand].sqrt(), onehot, reduction="none").sum(1)
        outside = ~(in_box[j, cand] & in_ctr[j, cand])
        cost[j] = bce - 3 * torch.log(ious[j] + 1e-8) + 1e5 * outside
    picks: dict[int, list[int]] = {}
    for j in range(g):
        k = max(1, int(ious[j].topk(min(topk, len(cand))).values.sum()))
        for m in cost[j].topk(k, largest=False).indices.tolist():
            picks.setdefault(m, []).append(j)
    return {int(cand[m]): min(js, key=lambda j: cost[j, m]) for m, js in picks.items()}


def test_simota_matches_reference_on_random_boxes() -> None:
    gen = torch.Generator().manual_seed(0)
    centres, strides = [], []
    for s in (8, 16, 32):
        c, st = _grid(96 // s, 128 // s, s)
        centres.append(c)
        strides.append(st)
    centres, strides = torch.cat(centres), torch.cat(strides)
    n = len(centres)
    for _ in range(3):
        # boxes of 30–50 px hold more points than k, so ties among penalised points never decide
        xy = torch.rand(4, 2, generator=gen) * torch.tensor([70.0, 40.0])
        gts = torch.cat((xy, xy + 30 + torch.rand(4, 2, generator=gen) * 20), 1)
        labels = torch.randint(0, 3, (4,), generator=gen)
        jitter = torch.randn(n, 4, generator=gen) * 6
        boxes = gts[torch.randint(0, 4, (n,), generator=gen)] + jitter
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        scores = torch.rand(n, 3, generator=gen) * 0.9 + 0.05
        fg, idx, iou = simota_assign(boxes, scores, centres, strides, gts, labels)
        got = dict(zip(fg.nonzero()[:, 0].tolist(), idx.tolist(), strict=True))
        assert got == _reference_simota(boxes, scores, centres, strides, gts, labels)
        points = fg.nonzero()[:, 0]
        assert torch.allclose(iou, box_iou(boxes[points], gts)[torch.arange(len(idx)), idx])


def _calibrate_batchnorm(model: nn.Module, images: torch.Tensor) -> None:
    """Set each BatchNorm's running statistics to the exact (biased) statistics of ``images``.

    After a few dozen steps at momentum 0.03 the running averages still mostly hold their initial
    values, and PyTorch's running variance is unbiased (× n/(n−1), 3 % on the 4×4 maps of two
    128 px images), a difference this deep a stack amplifies; eval must see what training saw.
    """

    def set_stats(bn: nn.BatchNorm2d, args: tuple[torch.Tensor]) -> None:
        bn.running_mean.copy_(args[0].mean((0, 2, 3)))
        bn.running_var.copy_(args[0].var((0, 2, 3), unbiased=False))

    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    handles = [bn.register_forward_pre_hook(set_stats) for bn in bns]
    with torch.no_grad():
        model.eval().predict_raw(images)
    for h in handles:
        h.remove()


def test_training_overfits_two_images() -> None:
    torch.manual_seed(0)
    model = YOLOX(size="nano", num_classes=2)
    images, targets = blob_batch()
    losses = overfit(model, images, targets, steps=60, lr=3e-3)
    _calibrate_batchnorm(model, images)
    with torch.no_grad():
        preds = model(images)
    assert sum(losses[-5:]) / 5 < 0.4 * losses[0]
    for p, t in zip(preds, targets, strict=True):
        assert p["labels"][0] == t["labels"][0]
        assert box_iou(p["boxes"][:1], t["boxes"])[0, 0] > 0.5


def test_empty_targets_give_finite_objectness_only_loss() -> None:
    model = YOLOX(size="nano", num_classes=2)
    empty = [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    losses = model(torch.rand(2, 3, 64, 64), empty)
    assert torch.isfinite(losses["loss"]) and losses["loss"] > 0
    assert losses["loss_iou"] == 0 and losses["loss_cls"] == 0 and losses["num_fg"] == 0
    losses["loss"].backward()


def test_no_aug_epochs_switch_on_the_l1_loss() -> None:
    model = YOLOX(size="nano", num_classes=2)
    images, targets = blob_batch()
    model.set_epoch(0, 10, no_aug=False)
    assert model(images, targets)["loss_l1"] == 0
    model.set_epoch(9, 10, no_aug=True)
    losses = model(images, targets)
    assert losses["loss_l1"] > 0
    parts = sum(losses[k] for k in ("loss_iou", "loss_obj", "loss_cls", "loss_l1"))
    assert torch.allclose(losses["loss"].detach(), parts)


def test_l1_target_is_zero_for_a_perfect_prediction() -> None:
    """The L1 target inverts the decoding: (offset + cell) · stride = centre, e^log-size · stride
    = size, so a prediction equal to its GT has zero L1 loss."""
    model = YOLOX(size="nano", num_classes=1)
    model.use_l1 = True
    grid = torch.tensor([[3.0, 2.0]])
    strides = torch.tensor([16.0])
    raw = torch.tensor([[[0.4, 0.7, 0.5, -0.2, 5.0, 5.0]]])
    box = model._decode(raw[..., :4], grid, strides)[0]
    losses = model.loss(raw, grid, strides, [{"boxes": box, "labels": torch.tensor([0])}])
    assert losses["num_fg"] == 1 and losses["loss_l1"] < 1e-5 and losses["loss_iou"] < 1e-5


def test_predict_raw_traces_and_follows_the_input_size() -> None:
    """The traced graph (what ONNX export records) rebuilds its grids from the input's shape."""
    model = YOLOX(size="nano", num_classes=3).eval()
    with torch.no_grad():
        traced = torch.jit.trace(DenseOutputs(model), torch.rand(1, 3, 64, 64))
        for shape in ((1, 3, 64, 64), (2, 3, 96, 128)):
            x = torch.rand(shape)
            for got, want in zip(traced(x), model.predict_raw(x), strict=True):
                assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)
    n = sum((96 // s) * (128 // s) for s in (8, 16, 32))
    assert want.shape == (2, n, 3)


def test_unknown_size_is_refused() -> None:
    with pytest.raises(ValueError, match="nano, tiny, s, m, l, x"):
        YOLOX(size="q")


def test_onnx_export_matches_pytorch(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from visionzoo.detection.export import check_onnx, export_onnx

    model = YOLOX(size="nano", num_classes=3).eval()
    path = export_onnx(model, tmp_path / "yolox.onnx", (96, 128))
    assert check_onnx(model, path, torch.rand(2, 3, 96, 128)) < 1e-4
