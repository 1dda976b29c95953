"""Detection models: YOLOv5-style, YOLOX-style and Faster R-CNN (registered on import)."""

from visionzoo.detection.models import faster_rcnn, retinanet, yolov5, yolox  # noqa: F401
