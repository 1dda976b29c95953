"""Object detection: YOLOv5, YOLOX, Faster R-CNN; COCO / YOLO / VOC data; COCO mAP.

Importing this package registers the family, its models and its synthetic dataset.
"""

from visionzoo.detection import models, synthetic  # noqa: F401  (register)
from visionzoo.detection.check import check_data
from visionzoo.detection.export import export_checkpoint
from visionzoo.detection.module import DetectionModule
from visionzoo.family import Family
from visionzoo.registry import register_family

FAMILY = register_family(
    Family(
        name="detection",
        module=DetectionModule,
        default_model="yolov5",
        default_data="synthetic_detection",
        description="boxes + classes, YOLO training recipe, COCO mAP",
        check_data=check_data,
        export=export_checkpoint,
        bench="visionzoo.detection.bench",
    )
)
