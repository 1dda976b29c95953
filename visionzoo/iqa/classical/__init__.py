"""Classical (hand-crafted, training-free) image-quality metrics, batched in torch.

Full-reference: :func:`psnr`, :func:`ssim`, :func:`ms_ssim`, :func:`vsi` (higher is better).
No-reference: :func:`niqe`, :func:`brisque` (lower is better), with the official LIVE models in
``params/``. Each is calibrated against the reference implementation's published scores
(``tests/iqa/test_classical.py``). The losses live in :mod:`.losses` (imported on purpose: it
registers them).
"""

from visionzoo.iqa.classical.brisque import brisque
from visionzoo.iqa.classical.color import rgb_to_gray, rgb_to_y
from visionzoo.iqa.classical.imresize import imresize
from visionzoo.iqa.classical.niqe import niqe
from visionzoo.iqa.classical.psnr import psnr
from visionzoo.iqa.classical.ssim import ms_ssim, ssim
from visionzoo.iqa.classical.vsi import vsi

__all__ = [
    "brisque",
    "imresize",
    "ms_ssim",
    "niqe",
    "psnr",
    "rgb_to_gray",
    "rgb_to_y",
    "ssim",
    "vsi",
]
