"""Recognition inference outside training: comparing two face images and ONNX export of the
embedding network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch


def compare(module: Any, first: str, second: str, far: float, datamodule: Any) -> dict[str, Any]:
    """Cosine similarity of two face images' embeddings, and the same/different decision at
    the threshold that gave ``far`` on the checkpoint's last validation (first set)."""
    thresholds = module.far_thresholds
    key = f"{far:g}"
    if key not in thresholds:
        known = ", ".join(sorted(thresholds, key=float)) or "none (validate the checkpoint first)"
        raise ValueError(
            f"far={far:g} has no threshold in this checkpoint; thresholds were resolved for "
            f"FAR = {known} (a FAR needs at least 1/FAR impostor pairs in validation)"
        )
    paths = [Path(first), Path(second)]
    emb = module.embed_files(paths, datamodule.eval_tf)
    similarity = float(np.dot(emb[0], emb[1]))
    threshold = thresholds[key]
    return {
        "image1": first,
        "image2": second,
        "similarity": similarity,
        "far": far,
        "threshold": threshold,
        "same": similarity >= threshold,
    }


def export_checkpoint(
    module: Any, output: str, image_size: int | list[int] | None, opset: int, check: bool
) -> str:
    """``export.py`` for a recognition checkpoint: the embedding network (images (B, 3, H, W)
    normalised as in training → embeddings (B, D)) to ONNX with a dynamic batch axis; the
    training head is left out. ``check`` compares ONNX Runtime with PyTorch on random faces."""
    net = module.embedder.eval()
    size = image_size or module.hparams.data_meta.get("image_size", [112, 112])
    hw = (size, size) if isinstance(size, int) else tuple(size)
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        net,
        (torch.zeros(1, 3, *hw),),
        str(path),
        input_names=["images"],
        output_names=["embeddings"],
        dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
    message = f"wrote {path}"
    if check:
        import onnxruntime as ort

        images = torch.rand(2, 3, *hw) * 2 - 1
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"images": images.numpy()})
        with torch.no_grad():
            want = net(images).numpy()
        message += f"; ONNX Runtime vs PyTorch max abs difference {np.abs(got - want).max():.2e}"
    return message
