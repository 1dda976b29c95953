"""Family metrics as torchmetrics ``Metric`` objects (state is summed across DDP ranks)."""
