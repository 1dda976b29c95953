"""Semantic segmentation: U-Net, FCN, DeepLabv3/v3+; mask-folder / VOC / CamVid data; mIoU.

Importing this package registers the family, its models and its synthetic dataset.
"""

from visionzoo.family import Family
from visionzoo.registry import register_family
from visionzoo.segmentation import models, synthetic  # noqa: F401  (register)
from visionzoo.segmentation.check import check_data
from visionzoo.segmentation.module import SegmentationModule

FAMILY = register_family(
    Family(
        name="segmentation",
        module=SegmentationModule,
        default_model="unet",
        default_data="synthetic_segmentation",
        description="per-pixel classes, region losses, mIoU / Dice",
        check_data=check_data,
        bench="visionzoo.segmentation.bench",
    )
)
