"""The raw-pixel baseline scores a pair by the Pearson correlation of the two images' pixels."""

from __future__ import annotations

import numpy as np
import torch

from visionzoo.recognition.module import embed
from visionzoo.recognition.recognizer import raw_pixels


def test_cosine_of_pixel_embeddings_is_pearson_correlation() -> None:
    images = torch.rand(4, 3, 16, 12)
    emb = embed(raw_pixels(), images, flip=False).numpy()
    flat = images.flatten(1).numpy().astype(np.float64)
    want = np.corrcoef(flat)
    np.testing.assert_allclose(emb @ emb.T, want, atol=1e-5)
