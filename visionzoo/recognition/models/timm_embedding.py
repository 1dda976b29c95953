"""Any timm classification trunk as a face/metric embedding backbone: globally pooled features
followed by insightface's embedding neck (BN → Dropout → FC → BatchNorm1d)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from visionzoo.recognition.models.iresnet import embedding_batchnorm


class TimmEmbedding(nn.Module):
    """``(B, in_chans, H, W) -> (B, embedding_size)`` for any timm model name.

    ``trunk`` is ``timm.create_model(name, num_classes=0, global_pool="avg")`` (its pooled
    ``num_features`` vector; any input size the timm model accepts), then ``bn``
    (BatchNorm1d) → ``dropout`` → ``fc`` → ``features`` (BatchNorm1d with its scale frozen at 1,
    as insightface's IResNet neck). ``input_size`` is passed as ``img_size`` to the timm models
    that take one (ViT, Swin, ...); extra keyword arguments go to ``timm.create_model``.
    Nothing is downloaded: the trunk starts random, and ``create_backbone(pretrained_file=...)``
    loads local timm weights into it through ``trunk_state_dict_from``.
    """

    def __init__(
        self,
        name: str,
        *,
        embedding_size: int = 512,
        dropout: float = 0.0,
        in_chans: int = 3,
        input_size: int = 112,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        import timm  # imported on use: it costs seconds at start-up for every command

        if not timm.is_model(name):
            raise ValueError(
                f"unknown backbone {name!r}: not iresnet18/34/50/100, mobilefacenet or a "
                "timm model name (see timm.list_models(), e.g. resnet50, convnext_tiny)"
            )
        kwargs = {"num_classes": 0, "global_pool": "avg", "in_chans": in_chans, **timm_kwargs}
        try:
            self.trunk = timm.create_model(name, pretrained=False, img_size=input_size, **kwargs)
        except TypeError as err:
            # Convolutional trunks take any size and reject ``img_size``; only they land here.
            if "img_size" not in str(err):
                raise
            self.trunk = timm.create_model(name, pretrained=False, **kwargs)
        self.in_chans = in_chans
        width = self.trunk.num_features
        self.bn = nn.BatchNorm1d(width, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(width, embedding_size)
        self.features = embedding_batchnorm(embedding_size)

    def trunk_state_dict_from(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A timm checkpoint of the full classifier made fit for ``trunk``: classifier weights
        dropped (the trunk has none) and the stem conv adapted when ``in_chans`` != 3
        (timm's ``adapt_input_conv``: summed to grey, or tiled)."""
        from timm.models import adapt_input_conv

        cfg = self.trunk.pretrained_cfg
        classifiers = cfg.get("classifier") or ()
        classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
        out = {
            key: value
            for key, value in state.items()
            if not any(key.startswith(f"{prefix}.") for prefix in classifiers)
        }
        first_conv = cfg.get("first_conv")
        first_conv = first_conv if isinstance(first_conv, str) else None
        weight_key = f"{first_conv}.weight"
        if first_conv and weight_key in out and out[weight_key].shape[1] != self.in_chans:
            out[weight_key] = adapt_input_conv(self.in_chans, out[weight_key])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.bn(self.trunk(x)))
        return self.features(self.fc(x))
