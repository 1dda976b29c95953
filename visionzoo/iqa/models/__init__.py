"""Image-quality models: metric-only wrappers of the classical metrics (PSNR, SSIM, MS-SSIM,
VSI, NIQE, BRISQUE) and the learned MetaIQA and CenseoQoE regressors.

Every model maps ``forward(image, reference=None)`` (B, 3, H, W) images in [0, 1] to (B,)
scores and says ``needs_reference`` (full-reference) and ``higher_is_better``."""

from visionzoo.iqa.models import censeo, classical, metaiqa  # noqa: F401  (register)
