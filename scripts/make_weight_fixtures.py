"""Write the weight-import test fixtures from the reference implementations (run once; the
outputs are committed under tests/detection/fixtures/).

    pip install --target /tmp/ref yolov5==7.0.14 ...   # the yolov5 PyPI package + its imports
    tar xzf yolox-0.3.0.tar.gz -C /tmp/ref             # Megvii YOLOX 0.3.0 sources (sdist)
    PYTHONPATH=/tmp/ref:/tmp/ref/yolox-0.3.0 python scripts/make_weight_fixtures.py

- ``yolov5_tiny_v7_fp16.pt``: an official-layout YOLOv5 v7.0 release-style checkpoint (the
  pickled ``models.yolo.DetectionModel`` in fp16, ``ema`` None, class names a dict), built by the
  ``yolov5`` package from yolov5n.yaml at width 1/32 (so the files stay small), 4 classes,
  non-default anchors; ``yolov5_tiny_v6_fp32.pt``: a training-style one (an fp16 ``model`` and
  a different fp32 ``ema``, which is the one to load; names a list).
- ``weights_reference.pt``: the reference networks' outputs on ``fake_images()``: YOLOv5's raw
  per-level logits for both files, and Megvii YOLOX-nano's (3 classes, weights
  ``fake_weights`` of its own key listing, also stored) raw head outputs on 0-255 BGR.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "detection"))
from weight_fixtures import FIXTURES, REFERENCE, fake_images, fake_weights  # noqa: E402


def official_yolov5(nc: int, anchors: list[list[int]], depth: float = 0.33, width: float = 0.03125):
    import yolov5.models.common as common
    import yolov5.models.yolo as yolo
    from yolov5.models import __path__ as models_path

    # pickle under the official module paths (models.yolo, models.common), as yolov5's own
    # train.py writes them
    sys.modules["models"] = sys.modules["yolov5.models"]
    sys.modules["models.yolo"], sys.modules["models.common"] = yolo, common
    for mod in (yolo, common):
        for obj in vars(mod).values():
            if isinstance(obj, type) and obj.__module__ == mod.__name__:
                obj.__module__ = mod.__name__.removeprefix("yolov5.")
    import yaml

    cfg = yaml.safe_load(Path(models_path[0], "yolov5n.yaml").read_text())
    cfg.update(nc=nc, depth_multiple=depth, width_multiple=width, anchors=anchors)
    return yolo.DetectionModel(cfg, ch=3, nc=nc)


def raw_levels(model, x: torch.Tensor) -> list[torch.Tensor]:
    model.eval()
    with torch.no_grad():
        _, levels = model(x)
    return levels


def main() -> None:
    FIXTURES.mkdir(exist_ok=True)
    x = fake_images()
    ref: dict = {}
    anchors = [[12, 16, 19, 36, 40, 28], [36, 75, 76, 55, 72, 146], [142, 110, 192, 243, 459, 401]]
    names = ["platelet", "rbc", "wbc", "blast"]
    # v7.0 release style: fp16 model, no EMA, names as a dict
    net = official_yolov5(4, anchors)
    shapes = [(k, tuple(v.shape)) for k, v in net.state_dict().items() if not k.endswith("anchors")]
    net.load_state_dict(fake_weights(shapes), strict=False)
    net.names = dict(enumerate(names))
    net.half()
    ckpt = {
        "epoch": -1,
        "best_fitness": None,
        "model": net,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "opt": {"imgsz": 640},
        "git": None,
        "date": "2022-11-22",
    }
    torch.save(ckpt, FIXTURES / "yolov5_tiny_v7_fp16.pt")
    ref["yolov5_v7"] = raw_levels(net.float(), x)
    # v6 training style: fp32 model + a different EMA (the EMA is what YOLOv5 loads)
    model, ema = official_yolov5(4, anchors), official_yolov5(4, anchors)
    model.load_state_dict(fake_weights(shapes), strict=False)
    sd = fake_weights(shapes[::-1])  # other values, same shapes
    ema.load_state_dict({k: sd[k] for k, _ in shapes}, strict=False)
    model.half()
    for m in (model, ema):
        m.names = names
    ckpt = {
        "epoch": 299,
        "best_fitness": 0.5,
        "model": model,
        "ema": ema,
        "updates": 1000,
        "optimizer": None,
        "opt": {"imgsz": 640},
    }
    torch.save(ckpt, FIXTURES / "yolov5_tiny_v6_fp32.pt")
    ref["yolov5_v6"] = raw_levels(ema, x)
    # Megvii YOLOX-nano, 3 classes: key listing + outputs for fake_weights of it
    from yolox.models import YOLOPAFPN, YOLOX, YOLOXHead

    yx = YOLOX(YOLOPAFPN(0.33, 0.25, depthwise=True), YOLOXHead(3, 0.25, depthwise=True))
    yx_shapes = [(k, tuple(v.shape)) for k, v in yx.state_dict().items()]
    yx.load_state_dict(fake_weights(yx_shapes))
    yx.eval()
    yx.head.decode_in_inference = False  # raw offsets, sigmoid objectness and classes
    with torch.no_grad():
        ref["yolox_nano"] = yx(x.flip(1) * 255.0)
    ref["yolox_nano_keys"] = [[k, list(s)] for k, s in yx_shapes]
    torch.save(ref, REFERENCE)
    for f in sorted(FIXTURES.iterdir()):
        print(f.name, f.stat().st_size)


if __name__ == "__main__":
    main()
