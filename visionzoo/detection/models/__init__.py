"""Detection models: YOLOv5-style, YOLOX-style and Faster R-CNN (registered on import)."""

from visionzoo.detection.models import (  # noqa: F401
    cascade_rcnn,
    faster_rcnn,
    retinanet,
    yolov5,
    yolox,
)
