"""Official detector checkpoints as starting weights (``model.weights=<file>``).

- YOLOv5 v6.0–v7.0 ``.pt`` (Ultralytics): a pickled model object. It is read by a restricted
  unpickler that rebuilds tensors and plain containers and turns every class the file names into
  an inert record of its pickled state, so no code from the file runs and the ``yolov5`` package
  is never imported. The network's layout (``yaml``), depth and width multiples, anchors and
  class names come from the file.
- YOLOX ``.pth`` (Megvii): a state dict under ``model``; YOLOX's input convention (BGR, 0–255,
  no normalisation) travels with the imported model (``input_format=bgr255``).
- torchvision ``fasterrcnn_resnet50_fpn`` / ``_v2`` state dicts (``model.state_dict()`` as torch
  hub saves it), into ``faster_rcnn`` with ``backbone=resnet50`` and the matching ``variant``.

Each reader returns an ``Imported``: the architecture options the file fixes (they replace the
config's, and are what the run's checkpoints record, so those rebuild without the file) and the
weights in the order of our network's ``state_dict``. ``load_imported`` copies them in after
checking every shape; a different number of classes re-initialises the class layers only.
"""

from __future__ import annotations

import _compat_pickle
import logging
import math
import pickle
import types
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

# ------------------------------------------------------------------ restricted unpickling
# The only callables a file may reach: tensor and parameter rebuilders and plain containers.
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch", "Size"): torch.Size,
}


class PickledObject:
    """What an unpickled instance of a class outside ``_SAFE_GLOBALS`` becomes: its class's
    import path, the arguments it was rebuilt with and its pickled state, nothing callable."""

    pickled_class = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> PickledObject:
        obj = object.__new__(cls)
        obj.__dict__.update(args=args, state={}, items=[])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls the class itself
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.__dict__["state"] = dict(state) if isinstance(state, dict) else {"value": state}

    def __setitem__(self, key: Any, value: Any) -> None:  # dict subclasses
        self.items.append((key, value))

    def append(self, value: Any) -> None:  # list subclasses
        self.items.append(value)

    def extend(self, values: Any) -> None:
        self.items.extend(values)

    def __repr__(self) -> str:
        return f"<pickled {self.pickled_class}>"


_STUBS: dict[str, type[PickledObject]] = {}


def _stub(module: str, name: str) -> type[PickledObject]:
    key = f"{module}.{name}"
    if key not in _STUBS:
        _STUBS[key] = type(name, (PickledObject,), {"pickled_class": key})
    return _STUBS[key]


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # protocol-2 files name Python 2's modules (__builtin__.set), as pickle's fix_imports
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        return _SAFE_GLOBALS.get((module, name)) or _stub(module, name)


_RESTRICTED = types.ModuleType("visionzoo_restricted_pickle")
_RESTRICTED.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
_RESTRICTED.load = pickle.load  # type: ignore[attr-defined]  # torch.load's legacy path only
_RESTRICTED.__dict__["UnpicklingError"] = pickle.UnpicklingError


def restricted_load(path: str | Path) -> Any:
    """``torch.load`` of a pickled checkpoint without running any of its code: tensors,
    containers and ``PickledObject`` records."""
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RESTRICTED)


def module_state(obj: Any, prefix: str = "") -> OrderedDict[str, torch.Tensor]:
    """The ``state_dict`` of a pickled ``nn.Module`` record (parameters, persistent buffers,
    then children, as ``nn.Module.state_dict`` orders them)."""
    state = obj.state if isinstance(obj, PickledObject) else {}
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    skip = state.get("_non_persistent_buffers_set") or set()
    for kind in ("_parameters", "_buffers"):
        for name, t in (state.get(kind) or {}).items():
            if isinstance(t, torch.Tensor) and name not in skip:
                out[prefix + name] = t.detach()
    for name, child in (state.get("_modules") or {}).items():
        out.update(module_state(child, f"{prefix}{name}."))
    return out


# ------------------------------------------------------------------------------ importing
# builds our network for the file's architecture options and class count
Builder = Callable[[dict[str, Any], int], nn.Module]


@dataclass
class Imported:
    """A checkpoint's weights in our network's ``state_dict`` order (``pairs``: our key, their
    tensor; their key for messages), the architecture options it fixes and its classes."""

    source: str
    spec: dict[str, Any]
    pairs: list[tuple[str, str, torch.Tensor]]
    num_classes: int
    class_names: list[str] | None = None
    # our keys of the class layers and how to keep their non-class rows when the count changes
    class_keys: tuple[str, ...] = ()
    merge_class_rows: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    model: nn.Module | None = None  # ours, built for ``spec``


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def zip_states(
    source: str,
    theirs: list[tuple[str, torch.Tensor]],
    ours: list[tuple[str, torch.Tensor]],
    class_keys: tuple[str, ...],
) -> list[tuple[str, str, torch.Tensor]]:
    """Pair two ``state_dict`` listings of one architecture entry by entry; every pair must
    agree in kind (weight / bias / running statistic) and, class layers aside, in shape."""
    if len(theirs) != len(ours):
        raise ValueError(
            f"model.weights={source}: {len(theirs)} tensors in the file, {len(ours)} in the "
            "configured network: it is another architecture (check model=, model.size)"
        )
    pairs = []
    for (their_key, t), (our_key, o) in zip(theirs, ours, strict=True):
        same_kind = their_key.rsplit(".", 1)[-1] == our_key.rsplit(".", 1)[-1]
        if not same_kind or (t.shape != o.shape and our_key not in class_keys):
            raise ValueError(
                f"model.weights={source}: {their_key} {tuple(t.shape)} does not fit "
                f"{our_key} {tuple(o.shape)}: the file holds another architecture"
            )
        pairs.append((our_key, their_key, t))
    return pairs


@torch.no_grad()
def load_imported(model: nn.Module, imported: Imported) -> None:
    """Copy ``imported``'s weights into ``model`` (cast to its dtype); class layers of another
    class count keep their fresh initialisation (their non-class rows are copied) and one line
    says so."""
    state = model.state_dict()
    reinit = []
    for our_key, _their_key, t in imported.pairs:
        target = state[our_key]
        if t.shape != target.shape:  # a class layer (zip_states checked everything else)
            reinit.append(our_key)
            if imported.merge_class_rows is not None:
                target.copy_(imported.merge_class_rows(our_key, target, t.to(target.dtype)))
            continue
        target.copy_(t.to(target.dtype))
    ours = getattr(model, "num_classes", imported.num_classes)
    if reinit:
        log.warning(
            "model.weights=%s has %d classes, the dataset %d: the class layers start afresh "
            "(%s); every other weight is the checkpoint's",
            imported.source,
            imported.num_classes,
            ours,
            ", ".join(sorted({k.rsplit(".", 1)[0] for k in reinit})),
        )
    else:
        log.info("model.weights=%s: all %d tensors loaded", imported.source, len(imported.pairs))


def _checkpoint_path(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"model.weights={path!r} does not exist: give the path of a downloaded checkpoint "
            "file (weights are never fetched from the internet here)"
        )
    return p


# ------------------------------------------------------------------------------- YOLOv5
# (from, module) of each layer of the YOLOv5 v6.0+ P5 layout (yolov5n.yaml ... yolov5x.yaml).
YOLOV5_LAYOUT = (
    (-1, "Conv"), (-1, "Conv"), (-1, "C3"), (-1, "Conv"), (-1, "C3"), (-1, "Conv"), (-1, "C3"),
    (-1, "Conv"), (-1, "C3"), (-1, "SPPF"),
    (-1, "Conv"), (-1, "nn.Upsample"), ([-1, 6], "Concat"), (-1, "C3"), (-1, "Conv"),
    (-1, "nn.Upsample"), ([-1, 4], "Concat"), (-1, "C3"), (-1, "Conv"), ([-1, 14], "Concat"),
    (-1, "C3"), (-1, "Conv"), ([-1, 10], "Concat"), (-1, "C3"), ([17, 20, 23], "Detect"),
)  # fmt: skip


def _names(raw: Any, nc: int) -> list[str]:
    if isinstance(raw, dict):
        return [str(raw.get(i, i)) for i in range(nc)]
    if isinstance(raw, list | tuple) and len(raw) == nc:
        return [str(n) for n in raw]
    return [str(i) for i in range(nc)]


def read_yolov5(path: str, ours: Builder) -> Imported:
    """An official YOLOv5 v6.0–v7.0 checkpoint (``ema`` if it has one, else ``model``);
    ``ours(spec)`` builds our network for the file's options, to pair the tensors against."""
    p = _checkpoint_path(path)
    try:
        ckpt = restricted_load(p)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(
            f"model.weights={path}: not a readable PyTorch checkpoint ({message})"
        ) from None
    net = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(net, PickledObject):
        raise ValueError(
            f"model.weights={path}: no pickled model under 'model' or 'ema'; expected an "
            "official YOLOv5 v6.0-v7.0 .pt file (a YOLOX .pth goes with model=yolox)"
        )
    if net.pickled_class.startswith("ultralytics."):
        raise ValueError(
            f"model.weights={path} is an Ultralytics 8 checkpoint ({net.pickled_class}, the "
            "anchor-free 'u' heads); model=yolov5 reads YOLOv5 v6.0-v7.0 files (yolov5n.pt ...)"
        )
    yaml = net.state.get("yaml")
    layers = list((yaml or {}).get("backbone", [])) + list((yaml or {}).get("head", []))
    layout = tuple((layer[0], layer[2]) for layer in layers if len(layer) == 4)
    if layout != YOLOV5_LAYOUT or (yaml or {}).get("activation"):
        raise ValueError(
            f"model.weights={path}: its network is not the YOLOv5 v6.0+ P5 layout "
            "(yolov5n-x.yaml: Conv/C3/SPPF backbone, PAN head, Detect on P3-P5, SiLU); P6 "
            "models, v5.0 (Focus) files and custom yamls are not supported"
        )
    detect = net.state["_modules"]["model"].state["_modules"][str(len(layers) - 1)]
    nc = int(yaml["nc"])
    strides = detect.state["stride"].tolist()
    if [float(s) for s in strides] != [8.0, 16.0, 32.0]:
        raise ValueError(f"model.weights={path}: strides {strides}; expected 8, 16, 32")
    theirs = module_state(net)
    anchor_key = next(k for k in theirs if k.endswith(".anchors"))
    anchors = theirs[anchor_key].float() * torch.tensor([8.0, 16.0, 32.0])[:, None, None]
    from visionzoo.detection.models.yolov5 import SIZES

    multiples = [float(yaml["depth_multiple"]), float(yaml["width_multiple"])]
    size = next((k for k, v in SIZES.items() if all(map(math.isclose, v, multiples))), None)
    spec = {  # a published size by its letter, a custom scale by its multiples
        "size": size,
        "multiples": None if size else multiples,
        "anchors": [[[round(v, 4) for v in a] for a in level] for level in anchors.tolist()],
    }
    model = ours(spec, nc)
    na = anchors.shape[1]

    def merge(key: str, fresh: torch.Tensor, loaded: torch.Tensor) -> torch.Tensor:
        # the head's rows are per anchor (box 4, objectness 1, classes): keep box + objectness
        fresh = fresh.clone()
        fresh.view(na, -1, *fresh.shape[1:])[:, :5] = loaded.view(na, -1, *loaded.shape[1:])[:, :5]
        return fresh

    ours_list = [
        (k, v) for k, v in model.state_dict().items() if not _is_counter(k) and k not in AUX_YOLOV5
    ]
    theirs_list = [
        (k, v)
        for k, v in theirs.items()
        if not _is_counter(k) and not k.endswith((".anchors", ".anchor_grid"))
    ]
    class_keys = tuple(k for k, _ in ours_list if k.startswith("head."))
    return Imported(
        source=str(path),
        spec=spec,
        pairs=zip_states(str(path), theirs_list, ours_list, class_keys),
        num_classes=nc,
        class_names=_names(net.state.get("names"), nc),
        class_keys=class_keys,
        merge_class_rows=merge,
        model=model,
    )


AUX_YOLOV5 = ("anchors", "strides")  # our buffers set from the spec, not copied


# -------------------------------------------------------------------------------- YOLOX
# Megvii's head lists each component across levels; ours lists each level's components.
_YOLOX_HEAD = {"stems": 0, "cls_convs": 1, "reg_convs": 2, "cls_preds": 3, "reg_preds": 4,
               "obj_preds": 5}  # fmt: skip


def _plain_state(path: str) -> dict[str, torch.Tensor]:
    p = _checkpoint_path(path)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        reason = (
            "it holds pickled objects (a YOLOv5 .pt goes with model=yolov5)"
            if isinstance(err, pickle.UnpicklingError)
            else str(err).splitlines()[0]
        )
        raise ValueError(f"model.weights={path}: not a state-dict checkpoint: {reason}") from None
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        ckpt = ckpt["model"]
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ValueError(f"model.weights={path}: expected a state dict (or one under 'model')")
    return ckpt


def read_yolox(path: str, ours: Builder) -> Imported:
    """An official YOLOX checkpoint (``{'model': state_dict}``); its size from the tensors."""
    theirs = _plain_state(path)
    stem = theirs.get("backbone.backbone.stem.conv.conv.weight")
    pred = theirs.get("head.cls_preds.0.weight")
    if stem is None or pred is None:
        raise ValueError(
            f"model.weights={path}: not a YOLOX checkpoint (no backbone.backbone.stem / "
            "head.cls_preds tensors); official YOLOX .pth files hold them under 'model'"
        )
    width = stem.shape[0] / 64
    depthwise = "backbone.backbone.dark2.0.dconv.conv.weight" in theirs
    blocks = {k.split(".")[5] for k in theirs if k.startswith("backbone.backbone.dark3.1.m.")}
    depth = len(blocks) / 9
    from visionzoo.detection.models.yolox import SIZES

    size = next(
        (
            name
            for name, (d, w, dw) in SIZES.items()
            if math.isclose(w, width) and round(9 * d) == len(blocks) and dw == depthwise
        ),
        None,
    )
    if size is None:
        raise ValueError(
            f"model.weights={path}: width {width:g}, depth {depth:g}, depthwise={depthwise} "
            f"matches no YOLOX size ({', '.join(SIZES)})"
        )
    spec = {"size": size, "input_format": "bgr255"}
    nc = int(pred.shape[0])
    model = ours(spec, nc)

    def order(item: tuple[int, tuple[str, torch.Tensor]]) -> tuple:
        i, (key, _) = item
        parts = key.split(".")
        if parts[0] == "head" and parts[1] in _YOLOX_HEAD:
            return (1, int(parts[2]), _YOLOX_HEAD[parts[1]], i)
        return (0, 0, 0, i)

    items = [(k, v) for k, v in theirs.items() if not _is_counter(k)]
    theirs_list = [kv for _, kv in sorted(enumerate(items), key=order)]
    ours_list = [(k, v) for k, v in model.state_dict().items() if not _is_counter(k)]
    class_keys = tuple(k for k, _ in ours_list if ".cls_pred." in k)
    return Imported(
        source=str(path),
        spec=spec,
        pairs=zip_states(str(path), theirs_list, ours_list, class_keys),
        num_classes=nc,
        class_keys=class_keys,
        model=model,
    )


# ------------------------------------------------------------------------- Faster R-CNN
def read_torchvision_frcnn(path: str, ours: Builder) -> Imported:
    """torchvision's ``fasterrcnn_resnet50_fpn`` (``variant=v1``) or ``_v2`` weights."""
    theirs = _plain_state(path)
    if "backbone.body.conv1.weight" not in theirs or "rpn.head.cls_logits.weight" not in theirs:
        raise ValueError(
            f"model.weights={path}: not a torchvision Faster R-CNN state dict (no "
            "backbone.body / rpn.head tensors)"
        )
    variant = "v2" if "roi_heads.box_head.0.0.weight" in theirs else "v1"
    # torchvision freezes v1's trunk BatchNorm (FrozenBatchNorm2d); v2 keeps BatchNorm2d
    spec = {"backbone": "resnet50", "variant": variant, "fpn_levels": 4,
            "frozen_bn": variant == "v1"}  # fmt: skip
    nc = int(theirs["roi_heads.box_predictor.cls_score.weight"].shape[0]) - 1
    model = ours(spec, nc)
    theirs_list = [(k, v) for k, v in theirs.items() if not _is_counter(k)]
    ours_list = [(k, v) for k, v in model.state_dict().items() if not _is_counter(k)]
    class_keys = (
        "roi_heads.box_predictor.cls_score.weight",
        "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.bbox_pred.bias",
    )
    return Imported(
        source=str(path),
        spec=spec,
        pairs=zip_states(str(path), theirs_list, ours_list, class_keys),
        num_classes=nc,
        class_keys=class_keys,
        model=model,
    )


def import_weights(
    reader: Callable[[str, Builder], Imported], path: str, build: Builder
) -> nn.Module:
    """Our network built for the checkpoint at ``path`` (``reader`` says its architecture) with
    its weights in. ``spec_update`` on the network holds the options the file fixed; the task
    module records them (with ``weights`` cleared) so that run checkpoints rebuild without it."""
    imported = reader(path, build)
    model = imported.model
    load_imported(model, imported)
    model.spec_update = {**imported.spec, "weights": None}
    model.imported_class_names = imported.class_names
    return model
