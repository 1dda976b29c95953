"""Official detector checkpoints in (``model.weights``), each against its reference network:

- YOLOv5 ``.pt``: files written by the ``yolov5`` PyPI package (7.0.14) under the official module
  paths, and that package's raw outputs on them (``scripts/make_weight_fixtures.py``);
- YOLOX ``.pth``: Megvii YOLOX 0.3.0's key listing and raw outputs for deterministic weights;
- torchvision Faster R-CNN v1 / v2: torchvision itself, here.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from conftest import TINY_DET, compose, run_entry
from weight_fixtures import FIXTURES, REFERENCE, fake_images, fake_weights, skipped_init

from visionzoo.cli import build_run, eval_entry
from visionzoo.detection.module import DetectionModule
from visionzoo.detection.weights import restricted_load
from visionzoo.registry import create_model

V7 = FIXTURES / "yolov5_tiny_v7_fp16.pt"
V6 = FIXTURES / "yolov5_tiny_v6_fp32.pt"
ANCHORS = [
    [[12.0, 16.0], [19.0, 36.0], [40.0, 28.0]],
    [[36.0, 75.0], [76.0, 55.0], [72.0, 146.0]],
    [[142.0, 110.0], [192.0, 243.0], [459.0, 401.0]],
]


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(REFERENCE, map_location="cpu", weights_only=True)


def max_diff(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(ours, theirs, strict=True))


@pytest.mark.parametrize(("path", "key"), [(V7, "yolov5_v7"), (V6, "yolov5_v6")])
def test_yolov5_checkpoint_matches_the_official_network(path, key, reference) -> None:
    # v7 release style (fp16 model, no EMA); v6 training style (its fp32 EMA, not its model)
    model = create_model("yolov5", size="l", weights=str(path), num_classes=None).eval()
    assert model.spec_update == {
        "size": None,
        "multiples": [0.33, 0.03125],
        "anchors": ANCHORS,
        "weights": None,
    }
    assert model.imported_class_names == ["platelet", "rbc", "wbc", "blast"]
    with torch.no_grad():
        raw = model._raw(fake_images())
    assert max_diff(raw, reference[key]) <= 1e-4


def test_other_class_count_keeps_every_other_weight(reference, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="visionzoo.detection.weights"):
        model = create_model("yolov5", weights=str(V7), num_classes=3).eval()
    (line,) = [r.getMessage() for r in caplog.records]
    assert "4 classes, the dataset 3" in line and "head.0, head.1, head.2" in line
    with torch.no_grad():
        raw = model._raw(fake_images())
    # box and objectness logits are the checkpoint's; class logits come from fresh rows
    assert max_diff([r[..., :5] for r in raw], [r[..., :5] for r in reference["yolov5_v7"]]) <= 1e-4
    assert raw[0].shape[-1] == 5 + 3


def test_the_unpickler_runs_no_code_from_the_file(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": Payload(), "epoch": 3}, tmp_path / "evil.pt")
    loaded = restricted_load(tmp_path / "evil.pt")
    assert not marker.exists()
    assert loaded["epoch"] == 3 and "system" in loaded["model"].pickled_class
    with pytest.raises(ValueError, match="not the YOLOv5 v6.0"):
        create_model("yolov5", weights=str(tmp_path / "evil.pt"), num_classes=3)


def test_yolox_checkpoint_matches_megvii(tmp_path: Path, reference) -> None:
    keys = [(k, tuple(s)) for k, s in reference["yolox_nano_keys"]]
    torch.save({"model": fake_weights(keys), "start_epoch": 300}, tmp_path / "nano.pth")
    model = create_model("yolox", size="s", weights=str(tmp_path / "nano.pth"), num_classes=None)
    assert model.spec_update == {"size": "nano", "input_format": "bgr255", "weights": None}
    with torch.no_grad():
        out, _, _ = model.eval()._raw(fake_images())  # our 0-1 RGB in; the model converts
    ref = reference["yolox_nano"]  # raw offsets, sigmoid objectness and classes
    got = torch.cat((out[..., :4], out[..., 4:].sigmoid()), -1)
    assert got.shape == ref.shape and float((got - ref).abs().max()) <= 1e-4


def test_wrong_kind_of_file_is_one_clear_error(tmp_path: Path) -> None:
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a YOLOX checkpoint"):
        create_model("yolox", weights=str(tmp_path / "other.pth"), num_classes=3)
    with pytest.raises(ValueError, match="no pickled model"):
        create_model("yolov5", weights=str(tmp_path / "other.pth"), num_classes=3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_model("faster_rcnn", weights=str(tmp_path / "nope.pth"), num_classes=3)


def _torchvision_frcnn(variant: str):
    from torchvision.models import resnet50
    from torchvision.models.detection import FasterRCNN, fasterrcnn_resnet50_fpn_v2
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    kw = {"num_classes": 5, "min_size": 64, "max_size": 96}
    if variant == "v2":
        return fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, **kw)
    # what fasterrcnn_resnet50_fpn builds for trained weights: a FrozenBatchNorm2d trunk
    trunk = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3)
    return FasterRCNN(trunk, **kw)


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_torchvision_faster_rcnn_weights(variant: str, tmp_path: Path) -> None:
    with skipped_init():  # every weight is set below
        tv = _torchvision_frcnn(variant)
        state = fake_weights([(k, tuple(v.shape)) for k, v in tv.state_dict().items()])
        tv.load_state_dict(state)
        torch.save(state, tmp_path / "frcnn.pth")
        ours = create_model("faster_rcnn", weights=str(tmp_path / "frcnn.pth"), num_classes=None)
    assert ours.spec_update["variant"] == variant and ours.num_classes == 4
    tv.eval(), ours.eval()
    with torch.no_grad():
        batch, _ = tv.transform(list(fake_images()))  # 64×96: torchvision's resize is the identity
        ours_batch, _ = ours.transform(list(fake_images()))
        assert float((batch.tensors - ours_batch.tensors).abs().max()) <= 1e-6
        f_tv, f_ours = tv.backbone(batch.tensors), ours.backbone(batch.tensors)
        assert max_diff(list(f_ours.values()), list(f_tv.values())) <= 1e-4
        levels = list(f_tv.values())
        rpn_tv, rpn_ours = tv.rpn.head(levels), ours.rpn.head(levels)
        assert max_diff([*rpn_ours[0], *rpn_ours[1]], [*rpn_tv[0], *rpn_tv[1]]) <= 1e-4
        proposals, _ = tv.rpn(batch, f_tv)
        proposals = [p[:64] for p in proposals]  # the same boxes into both box heads
        heads = []
        for net in (tv, ours):
            pooled = net.roi_heads.box_roi_pool(f_tv, proposals, batch.image_sizes)
            heads.append(net.roi_heads.box_predictor(net.roi_heads.box_head(pooled)))
        assert max_diff(list(heads[1]), list(heads[0])) <= 1e-4
    if variant == "v1":  # torchvision's trained trunk: frozen BN, 3 trainable stages
        bns = [m for m in ours.backbone.body.modules() if "BatchNorm" in type(m).__name__]
        assert bns and all(type(m).__name__ == "FrozenBatchNorm2d" for m in bns)
        assert not ours.backbone.body.conv1.weight.requires_grad
        assert ours.backbone.body.layer2[0].conv1.weight.requires_grad


def test_faster_rcnn_backbone_from_a_local_file(tmp_path: Path, monkeypatch) -> None:
    import timm

    trunk = timm.create_model("resnet18")
    shapes = [(k, tuple(v.shape)) for k, v in trunk.state_dict().items()]
    trunk.load_state_dict(fake_weights(shapes))
    torch.save(trunk.state_dict(), tmp_path / "resnet18.pth")
    model = create_model(
        "faster_rcnn", backbone="resnet18", pretrained_file=str(tmp_path / "resnet18.pth"),
        num_classes=3,
    )  # fmt: skip
    body = model.backbone.body
    assert torch.equal(body.layer3[1].conv2.weight, trunk.layer3[1].conv2.weight)
    assert torch.equal(body.bn1.running_var, trunk.bn1.running_var)
    # model.pretrained=true asks timm for its hub weights (online); here only the request
    asked = {}
    real = timm.create_model

    def spy(name, pretrained=False, **kw):
        asked[name] = pretrained
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", spy)
    create_model("faster_rcnn", backbone="resnet18", pretrained=True, num_classes=3)
    assert asked == {"resnet18": True}


def test_train_and_eval_start_from_an_official_file(tmp_path: Path) -> None:
    cfg = compose(
        [*TINY_DET, f"model.weights={V7}", "trainer.fast_dev_run=true", "logger=none"], tmp_path
    )
    trainer, module, datamodule = build_run(cfg, tmp_path)
    # the run records what the file fixed, not the file: its checkpoints rebuild without it
    spec = module.hparams["model"]
    assert spec["weights"] is None and spec["multiples"] == [0.33, 0.03125]
    rebuilt = DetectionModule(**dict(module.hparams))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in module.state_dict().items()
    }
    trainer.fit(module, datamodule=datamodule)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    code, err = run_entry(
        eval_entry,
        *[o for o in TINY_DET if not o.startswith(("data.batch_size", "callbacks."))],
        "model=yolov5",
        f"model.weights={V7}",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert code == 0, err
    metrics = json.loads((tmp_path / "eval" / "eval_metrics.json").read_text())["metrics"]
    assert 0.0 <= metrics["val/map"] <= 1.0
