"""Image aesthetics: NIMA, RAPID and DMA-Net; AVA / CSV / synthetic data; accuracy, SRCC/PLCC,
EMD.

Importing this package registers the family, its models, its EMD loss, the shared pairwise rank
loss and its synthetic dataset.
"""

from visionzoo.aesthetics import losses, models, synthetic  # noqa: F401  (register)
from visionzoo.aesthetics.module import AestheticsModule
from visionzoo.family import Family
from visionzoo.losses import ranking  # noqa: F401  (registers pairwise_rank)
from visionzoo.registry import register_family

FAMILY = register_family(
    Family(
        name="aesthetics",
        module=AestheticsModule,
        default_model="nima",
        default_data="synthetic_aesthetics",
        description="aesthetic scores: vote distributions, high/low, accuracy / SRCC / EMD",
    )
)
