"""One LightningModule per task family, on the shared ``VisionModule`` base."""

from visionzoo.tasks.segmentation import SegmentationModule

TASK_MODULES = {"segmentation": SegmentationModule}

__all__ = ["TASK_MODULES", "SegmentationModule"]
