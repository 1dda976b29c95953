"""Write a visionzoo yolov5 checkpoint as an official YOLOv5 v7.0 file (the pickled
``models.yolo.DetectionModel`` in fp16, class names, anchors), as ultralytics/yolov5's own
``train.py`` saves release weights, so that official tooling (``detect.py``, ``val.py``) can
read our training; also how the README's "fine-tune an official file" row made its input.

    pip install --target /tmp/ref yolov5==7.0.14 ...   # see scripts/make_weight_fixtures.py
    PYTHONPATH=/tmp/ref python scripts/write_official_yolov5.py <run>/checkpoints/last.ckpt out.pt

Only n/s/m/l/x P5 networks (yolov5n.yaml with the checkpoint's depth and width multiples).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_weight_fixtures import official_yolov5  # noqa: E402

from visionzoo.detection.models.yolov5 import SIZES  # noqa: E402


def main(ckpt_path: str, out: str) -> None:
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    spec, names = hp["model"], hp["data_meta"]["class_names"]
    state = ckpt["state_dict"]
    prefix = "ema.module." if any(k.startswith("ema.module.") for k in state) else "model."
    ours = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    anchors = ours["anchors"].reshape(3, -1).tolist()
    depth, width = SIZES[spec.get("size", "n")]
    net = official_yolov5(len(names), [[round(v) for v in a] for a in anchors], depth, width)
    theirs = [k for k in net.state_dict() if not k.endswith(".anchors")]
    mine = [
        k for k in ours if k not in ("anchors", "strides") and not k.endswith("batches_tracked")
    ]
    theirs = [k for k in theirs if not k.endswith("batches_tracked")]
    assert len(mine) == len(theirs), (len(mine), len(theirs))
    sd = net.state_dict()
    for a, b in zip(mine, theirs, strict=True):
        assert sd[b].shape == ours[a].shape, (a, b)
        sd[b] = ours[a]
    net.load_state_dict(sd)
    # the Detect layer's anchors in stride units, exactly ours (not the rounded yaml values)
    detect = net.model[-1]
    detect.anchors.copy_(ours["anchors"].reshape(3, -1, 2) / detect.stride.view(-1, 1, 1))
    net.names = dict(enumerate(names))
    release = {"epoch": -1, "model": net.half(), "ema": None, "updates": None, "optimizer": None}
    torch.save({**release, "opt": {"imgsz": hp["data_meta"]["image_size"]}}, out)
    print(f"wrote {out}: yolov5{spec.get('size', 'n')} official layout, classes {names}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
