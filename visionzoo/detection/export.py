"""ONNX export of dense-output detectors (YOLOv5, YOLOX) with an ONNX Runtime check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn


class DenseOutputs(nn.Module):
    """Wraps a detector's ``predict_raw``: images ``[B, 3, H, W]`` in [0, 1] → ``boxes``
    ``[B, N, 4]`` xyxy and ``scores`` ``[B, N, C]``; NMS is left to the runtime."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.predict_raw(images)


def export_onnx(
    model: nn.Module, path: str | Path, image_size: tuple[int, int], opset: int = 17
) -> Path:
    """Write ``model`` (with a ``predict_raw`` method) to ``path`` with a dynamic batch axis."""
    if not hasattr(model, "predict_raw"):
        raise ValueError(
            f"{type(model).__name__} has no dense output (predict_raw); ONNX export supports "
            "yolov5 and yolox"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = DenseOutputs(model).eval()
    example = torch.zeros(1, 3, *image_size)
    torch.onnx.export(
        wrapper,
        (example,),
        str(path),
        input_names=["images"],
        output_names=["boxes", "scores"],
        dynamic_axes={"images": {0: "batch"}, "boxes": {0: "batch"}, "scores": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
    return path


def check_onnx(model: nn.Module, path: str | Path, images: torch.Tensor) -> float:
    """Largest absolute difference between ONNX Runtime's and PyTorch's outputs on ``images``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        want = DenseOutputs(model).eval()(images)
    return max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True))


def export_checkpoint(
    module: nn.Module, output: str, image_size: int | list[int] | None, opset: int, check: bool
) -> str:
    """``export.py`` for a detection checkpoint: its EMA weights to ONNX, optionally compared
    with ONNX Runtime on two random images; returns the line to print."""
    model = module.eval_model.eval()
    size = image_size or module.hparams.data_meta.get("image_size", 640)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    path = export_onnx(model, output, hw, opset=opset)
    message = f"wrote {path}"
    if check:
        diff = check_onnx(model, path, torch.rand(2, 3, *hw))
        message += f"; ONNX Runtime vs PyTorch max abs difference {diff:.2e}"
    return message
