"""Aesthetics models: NIMA (score distribution), RAPID (one/two columns), DMA-Net (patches)."""

from visionzoo.aesthetics.models import dma, nima, rapid  # noqa: F401  (register)
