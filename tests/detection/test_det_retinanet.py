"""RetinaNet: the same network as torchvision's RetinaNet on a ResNet FPN with P6 / P7 (its
state dict loads by name), the same head outputs and focal / box losses, and our contract
(letterboxed input, labels 0..C-1, boxes in input pixels)."""

from __future__ import annotations

import torch
from torchvision.models import resnet18
from torchvision.models.detection import RetinaNet as TorchvisionRetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from weight_fixtures import fake_images, fake_weights, skipped_init

from visionzoo import create_model
from visionzoo.detection.models.retinanet import default_anchor_sizes

SIZES = default_anchor_sizes((16, 32, 64, 128, 256))


def test_matches_torchvision_retinanet() -> None:
    with skipped_init():
        trunk = _resnet_fpn_extractor(
            resnet18(), 5, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(64, 64)
        )
        trunk.fpn = type(trunk.fpn)([128, 256, 512], 64, extra_blocks=LastLevelP6P7(64, 64))
        trunk.out_channels = 64
        anchors = AnchorGenerator(SIZES, ((0.5, 1.0, 2.0),) * 5)
        ref = TorchvisionRetinaNet(
            trunk, num_classes=3, anchor_generator=anchors, min_size=64, max_size=96
        )
        ours = create_model(
            "retinanet", backbone="resnet18", num_classes=3, fpn_channels=64, anchor_sizes=SIZES
        )
    state = fake_weights([(k, tuple(v.shape)) for k, v in ref.state_dict().items()])
    ref.load_state_dict(state)
    ours.load_state_dict(state, strict=True)  # torchvision's module names throughout
    images = fake_images()
    targets = [
        {"boxes": torch.tensor([[10.0, 8.0, 40.0, 50.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.tensor([[50.0, 20.0, 90.0, 60.0], [5, 5, 30, 25]]),
         "labels": torch.tensor([0, 1])},
    ]  # fmt: skip
    with torch.no_grad():
        batch, _ = ref.transform(list(images))  # 64×96: torchvision's resize is the identity
        feats = list(ref.backbone(batch.tensors).values())
        assert torch.allclose(list(ours.backbone(batch.tensors).values())[-1], feats[-1], atol=1e-5)
        want, got = ref.head(feats), ours.head(feats)
        for key in ("cls_logits", "bbox_regression"):
            assert torch.allclose(got[key], want[key], atol=1e-4), key
        ref.train(), ours.train()
        want = ref(list(images), targets)
        got = ours(images, targets)  # our labels 0..C-1 are RetinaNet's own (no background)
    for key in ("classification", "bbox_regression"):
        assert torch.allclose(got[key], want[key], atol=1e-5), key
    assert torch.allclose(got["loss"], want["classification"] + want["bbox_regression"])
    ours.eval()
    with torch.no_grad():
        dets = ours(torch.rand(1, 3, 64, 160))[0]
    assert len(dets["boxes"]) and dets["boxes"][:, 2].max() <= 160 and dets["boxes"].min() >= 0
    assert dets["labels"].max() < 3
