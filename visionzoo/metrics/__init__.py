"""Metrics shared across families: summed-state ones as torchmetrics ``Metric`` objects,
dataset-level ones (``correlation``: SRCC / PLCC / KRCC) on ``core.gathered.GatheredMetric``."""
