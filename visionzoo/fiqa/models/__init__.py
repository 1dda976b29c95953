"""Face-quality models, registered for ``task=fiqa``.

Every model maps face batches ``images`` (B, 3, H, W), normalised as the recognition family
normalises faces (to [-1, 1]), and optional ``landmarks`` (B, 5, 2) in pixels (NaN where
unknown) to qualities (B,), higher = better. Trainable ones say which pseudo-labels they learn
(``default_labels``) and with which loss (``loss_name``).
"""

from visionzoo.fiqa.models import handcrafted, magface_quality, regressor, serfiq  # noqa: F401
