"""Face recognition: margin heads (ArcFace, CosFace, SphereFace, ...) and metric-learning
losses on IResNet / MobileFaceNet / timm embedding networks; identity folders, insightface
RecordIO and verification ``.bin`` data; insightface's verification protocol.

Importing this package registers the family, its models and its synthetic dataset.
"""

from visionzoo.family import Family
from visionzoo.recognition import recognizer, synthetic  # noqa: F401  (register)
from visionzoo.recognition.inference import compare, export_checkpoint
from visionzoo.recognition.module import RecognitionModule
from visionzoo.registry import register_family

FAMILY = register_family(
    Family(
        name="recognition",
        module=RecognitionModule,
        default_model="arcface",
        default_data="synthetic_faces",
        description="face embeddings, margin / metric-learning losses, verification accuracy",
        export=export_checkpoint,
        compare=compare,
        bench="visionzoo.recognition.bench",
    )
)
