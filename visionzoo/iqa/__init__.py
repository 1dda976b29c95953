"""Image quality assessment: classical metrics (PSNR, SSIM, MS-SSIM, VSI, NIQE, BRISQUE) as
metric-only models, learned MetaIQA and CenseoQoE; TID2013 / KADID-10k / CSV / synthetic data
split by reference image; SRCC / PLCC / KRCC / RMSE over the whole dataset.

Importing this package registers the family, its models, the ``ssim`` / ``ms_ssim`` losses, the
shared pairwise rank loss and its synthetic dataset.
"""

from visionzoo.family import Family
from visionzoo.iqa import models, synthetic  # noqa: F401  (register)
from visionzoo.iqa.classical import losses  # noqa: F401  (registers the ssim / ms_ssim losses)
from visionzoo.iqa.module import IQAModule
from visionzoo.losses import ranking  # noqa: F401  (registers pairwise_rank)
from visionzoo.registry import register_family

FAMILY = register_family(
    Family(
        name="iqa",
        module=IQAModule,
        default_model="censeo",
        default_data="synthetic_iqa",
        description="image quality: classical metrics and learned regressors, SRCC / PLCC",
        bench="visionzoo.iqa.bench",
    )
)
