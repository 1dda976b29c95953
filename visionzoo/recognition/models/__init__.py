"""Recognition embedding backbones: ``create_backbone(name)`` builds IResNet, MobileFaceNet or any
timm trunk with an embedding neck, each mapping ``(B, C, H, W)`` images to ``(B, emb)``
embeddings, optionally initialised from a local weights file (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from visionzoo.recognition.models.iresnet import IRESNET_LAYERS, build_iresnet
from visionzoo.recognition.models.mobilefacenet import MobileFaceNet
from visionzoo.recognition.models.timm_embedding import TimmEmbedding

MAX_NAMES_SHOWN = 3  # key names quoted in a mismatch message


def create_backbone(
    name: str,
    *,
    embedding_size: int = 512,
    dropout: float = 0.0,
    pretrained_file: str | None = None,
    in_chans: int = 3,
    input_size: int = 112,
    **kw: Any,
) -> nn.Module:
    """An embedding backbone ``(B, in_chans, input_size, input_size) -> (B, embedding_size)``.

    ``name``: ``iresnet18|iresnet34|iresnet50|iresnet100`` (insightface arcface_torch layout),
    ``mobilefacenet`` (arcface_torch ``mbf``; ``blocks=``/``scale=`` in ``kw``) or any timm
    model name (``kw`` go to ``timm.create_model``). ``pretrained_file`` is a local ``.pth`` /
    ``.pt`` / ``.safetensors`` state dict (plain, ``{"state_dict": ...}`` or DDP ``module.``
    prefixed): the whole backbone for IResNet/MobileFaceNet (loaded strictly), the trunk of a
    timm classifier for timm names (classifier weights dropped, neck left random).
    """
    options = {"embedding_size": embedding_size, "in_chans": in_chans, "input_size": input_size}
    if name in IRESNET_LAYERS:
        if kw:
            raise ValueError(f"{name} takes no options {sorted(kw)}; remove them")
        model: nn.Module = build_iresnet(name, dropout=dropout, **options)
    elif name == "mobilefacenet":
        if dropout:
            raise ValueError("mobilefacenet has no dropout (arcface_torch's mbf); set dropout=0")
        model = MobileFaceNet(**options, **kw)
    else:
        model = TimmEmbedding(name, dropout=dropout, **options, **kw)
    if pretrained_file:
        state = read_state_dict(pretrained_file)
        if isinstance(model, TimmEmbedding):
            load_strict(model.trunk, model.trunk_state_dict_from(state), pretrained_file)
        else:
            load_strict(model, state, pretrained_file)
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file (read as plain data: ``weights_only``), unwrapped from
    ``{"state_dict": ...}`` / ``{"model": ...}`` and stripped of a DDP ``module.`` prefix."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(
            f"pretrained_file {str(path)!r} does not exist; give a local .pth state dict or "
            "null to start from random weights"
        )
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"cannot read pretrained_file {str(path)!r} as PyTorch weights ({reason})"
        ) from err
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"pretrained_file {str(path)!r} holds a {type(state).__name__}, not a state dict of "
            "tensors (plain or under 'state_dict'); save it with torch.save(model.state_dict())"
        )
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """``module.load_state_dict(state, strict=True)``, failing with one line that counts the
    missing, unexpected and mis-shaped keys of ``path`` and names a few of each."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    misshaped = [
        f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    problems = [
        f"{len(names)} {kind} keys ({', '.join(names[:MAX_NAMES_SHOWN])}"
        f"{', ...' if len(names) > MAX_NAMES_SHOWN else ''})"
        for kind, names in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped (file vs model)", misshaped),
        )
        if names
    ]
    if problems:
        raise ValueError(
            f"pretrained_file {str(path)!r} does not fit {type(module).__name__}: "
            f"{'; '.join(problems)}; use weights saved from the same architecture"
        )
    module.load_state_dict(state, strict=True)
