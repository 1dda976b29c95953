"""Face-image quality assessment: hand-crafted ISO/IEC 29794-5-style measures, FaceQnet,
SER-FIQ, MagFace magnitude and SDD-FIQA on top of the recognition family's checkpoints,
evaluated by the error-versus-discard characteristic (EDC) and its pAUC.

Importing this package registers the family, its models and its synthetic degraded faces.
"""

from visionzoo.family import Family
from visionzoo.fiqa import models, synthetic  # noqa: F401  (register)
from visionzoo.fiqa.module import FIQAModule
from visionzoo.registry import register_family

FAMILY = register_family(
    Family(
        name="fiqa",
        module=FIQAModule,
        default_model="faceqnet",
        default_data="synthetic_degraded_faces",
        description="face quality scores, EDC / pAUC of a recogniser's FNMR vs discarded share",
    )
)
