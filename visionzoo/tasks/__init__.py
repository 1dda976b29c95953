"""One LightningModule per task family, on the shared ``VisionModule`` base."""

from visionzoo.tasks.detection import DetectionModule
from visionzoo.tasks.segmentation import SegmentationModule

TASK_MODULES = {"detection": DetectionModule, "segmentation": SegmentationModule}

__all__ = ["TASK_MODULES", "DetectionModule", "SegmentationModule"]
