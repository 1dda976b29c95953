"""Loading a recognition checkpoint for face-quality methods: its embedding network, the input
size it was trained at, and embeddings of face batches at any input size."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from visionzoo.core.checkpoint import load_checkpoint_module


@dataclass
class LoadedRecognizer:
    """A recognition checkpoint's embedding network (``(B, 3, H, W) -> (B, D)``, eval mode),
    its input size (H, W), the loss head it was trained with and whether it flip-fuses."""

    net: torch.nn.Module
    image_size: tuple[int, int]
    head: str
    flip_test: bool

    def fit(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, h, w) resized to the network's input size (bilinear, antialiased)."""
        if tuple(images.shape[-2:]) == self.image_size:
            return images
        return F.interpolate(images, size=self.image_size, mode="bilinear", antialias=True)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings (B, D), flip-fused when the checkpoint validates so."""
        from visionzoo.recognition.module import embed

        self.net.to(images.device)
        return embed(self.net, self.fit(images), self.flip_test)


def load_recognizer(path: str, key: str = "task.recognizer") -> LoadedRecognizer:
    """The embedding network of recognition checkpoint ``path`` (``key`` names the option in
    errors)."""
    if not path:
        raise ValueError(f"{key} is not set: give a recognition checkpoint (.ckpt)")
    module = load_checkpoint_module(str(path))
    if module.hparams.task_name != "recognition":
        raise ValueError(
            f"{key}={path!r} is a {module.hparams.task_name!r} checkpoint; give one written by "
            "`train.py task=recognition`"
        )
    size = (module.hparams.data_meta or {}).get("image_size", [112, 112])
    return LoadedRecognizer(
        net=module.embedder.eval(),
        image_size=(int(size[0]), int(size[1])),
        head=module.hparams.model["name"],
        flip_test=bool(module.hparams.get("flip_test", True)),
    )
