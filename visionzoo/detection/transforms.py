"""YOLO-style detection augmentation (YOLOv5 / Ultralytics training recipe) on numpy arrays.

Images are uint8 ``(H, W, 3)`` RGB, boxes float32 ``(N, 4)`` ``xyxy`` pixels, labels int64
``(N,)``. Every random op takes an explicit ``np.random.Generator`` and draws the same number of
values whatever its settings, so a sample reseeded from its key repeats exactly.
"""

from __future__ import annotations

import math
import warnings

import albumentations as A
import cv2
import numpy as np

from visionzoo.core.transforms import seed_pipeline

PAD_VALUE = 114  # grey used for letterbox padding, mosaic fill and warp borders (YOLOv5)

Sample = tuple[np.ndarray, np.ndarray, np.ndarray]  # image, boxes, labels


def _boxes(boxes: np.ndarray) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def _clip(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    return boxes


# ----------------------------------------------------------------------------- resizing
def resize_long_side(
    img: np.ndarray, boxes: np.ndarray, img_size: int, interpolation: int = cv2.INTER_LINEAR
) -> tuple[np.ndarray, np.ndarray, float]:
    """Resize so the long side is ``img_size`` (aspect kept); boxes scale alike.

    Returns the image, the boxes and the scale factor. Pass ``cv2.INTER_AREA`` to shrink
    evaluation images without aliasing.
    """
    h, w = img.shape[:2]
    scale = img_size / max(h, w)
    if scale != 1:
        size = (max(round(w * scale), 1), max(round(h * scale), 1))
        img = cv2.resize(img, size, interpolation=interpolation)
    return img, _boxes(boxes) * np.float32(scale), scale


def eval_interpolation(shape: tuple[int, ...], img_size: int) -> int:
    """Evaluation's resize filter: ``INTER_AREA`` when shrinking (no aliasing), else linear."""
    return cv2.INTER_AREA if max(shape[:2]) > img_size else cv2.INTER_LINEAR


def rect_shape(
    aspect_lo: float, aspect_hi: float, img_size: int, stride: int, pad: float = 0.5
) -> tuple[int, int]:
    """YOLOv5's rectangular evaluation shape ``(h, w)`` for images whose height/width ratios
    span ``[aspect_lo, aspect_hi]``: the long side ``img_size``, each side the smallest stride
    multiple holding it plus ``pad`` strides."""
    lo, hi = aspect_lo, aspect_hi
    rel = (hi, 1.0) if hi < 1 else (1.0, 1 / lo) if lo > 1 else (1.0, 1.0)
    h, w = (int(math.ceil(x * img_size / stride + pad) * stride) for x in rel)
    return h, w


def letterbox(
    img: np.ndarray,
    boxes: np.ndarray,
    new_shape: int | tuple[int, int],
    stride: int = 32,
    auto: bool = False,
    scaleup: bool = True,
    color: int = PAD_VALUE,
) -> tuple[np.ndarray, np.ndarray, tuple[float, tuple[float, float]]]:
    """Scale ``img`` to fit ``new_shape`` (``(h, w)`` or a square side) and pad it centred.

    ``auto=True`` pads only to the smallest multiple of ``stride`` holding the scaled image
    (rectangular inference); ``scaleup=False`` never enlarges (evaluation). Returns the image,
    the mapped boxes and ``(ratio, (pad_left, pad_top))`` for ``scale_boxes_back``.
    """
    new_h, new_w = (new_shape, new_shape) if isinstance(new_shape, int | np.integer) else new_shape
    h, w = img.shape[:2]
    ratio = min(new_h / h, new_w / w)
    if not scaleup:
        ratio = min(ratio, 1.0)
    unpad_w, unpad_h = round(w * ratio), round(h * ratio)
    if auto:
        new_w, new_h = (math.ceil(x / stride) * stride for x in (unpad_w, unpad_h))
    if (unpad_w, unpad_h) != (w, h):
        img = cv2.resize(img, (unpad_w, unpad_h), interpolation=cv2.INTER_LINEAR)
    left, top = (new_w - unpad_w) // 2, (new_h - unpad_h) // 2
    right, bottom = new_w - unpad_w - left, new_h - unpad_h - top
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(color,) * 3)
    boxes = _boxes(boxes) * np.float32(ratio) + np.float32([left, top, left, top])
    return img, boxes, (ratio, (float(left), float(top)))


def scale_boxes_back(
    boxes: np.ndarray, ratio: float, pad: tuple[float, float], orig_shape: tuple[int, int]
) -> np.ndarray:
    """Inverse of ``letterbox``: boxes on the letterboxed image → original ``(h, w)`` pixels,
    clipped to the image."""
    out = (_boxes(boxes) - np.float32([pad[0], pad[1], pad[0], pad[1]])) / np.float32(ratio)
    return _clip(out, orig_shape[1], orig_shape[0])


# ------------------------------------------------------------------------------ mosaic
def mosaic4(items: list[Sample], img_size: int, rng: np.random.Generator) -> Sample:
    """Tile four samples (each resized to long side ``img_size``) around a random centre.

    The canvas is ``2s × 2s`` (``s = img_size``) filled with 114, the centre uniform in
    ``[s/2, 3s/2]``; image ``i`` touches the centre with its bottom-right, bottom-left,
    top-right, top-left corner. Boxes are offset, clipped to the canvas, and dropped when
    nothing is left. Crop back to ``s × s`` with ``random_affine(..., border=(-s//2, -s//2))``.
    """
    if len(items) != 4:
        raise ValueError(f"mosaic4 needs exactly 4 samples, got {len(items)}")
    s = img_size
    xc, yc = (int(v) for v in rng.uniform(s / 2, 3 * s / 2, size=2))
    canvas = np.full((2 * s, 2 * s, items[0][0].shape[2]), PAD_VALUE, dtype=np.uint8)
    all_boxes, all_labels = [], []
    for i, (img, boxes, labels) in enumerate(items):
        h, w = img.shape[:2]
        x0 = xc - w if i in (0, 2) else xc  # where the image's top-left lands on the canvas
        y0 = yc - h if i in (0, 1) else yc
        cx1, cy1, cx2, cy2 = max(x0, 0), max(y0, 0), min(x0 + w, 2 * s), min(y0 + h, 2 * s)
        canvas[cy1:cy2, cx1:cx2] = img[cy1 - y0 : cy2 - y0, cx1 - x0 : cx2 - x0]
        all_boxes.append(_boxes(boxes) + np.float32([x0, y0, x0, y0]))
        all_labels.append(np.asarray(labels, dtype=np.int64).reshape(-1))
    boxes = _clip(np.concatenate(all_boxes), 2 * s, 2 * s)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return canvas, boxes[keep], np.concatenate(all_labels)[keep]


# ------------------------------------------------------------------------------ affine
def affine_matrix(
    rng: np.random.Generator,
    in_size: tuple[int, int],
    out_size: tuple[int, int],
    degrees: float = 0.0,
    translate: float = 0.1,
    scale: float = 0.5,
    shear: float = 0.0,
    perspective: float = 0.0,
) -> tuple[np.ndarray, float]:
    """Random 3×3 warp ``T @ S @ R @ P @ C`` from an ``(h, w)`` input to an ``(h, w)`` output,
    and its scale factor.

    ``C`` moves the input centre to the origin, ``P`` adds perspective, ``R`` rotates by
    ±``degrees`` and scales by ``1 ± scale``, ``S`` shears by ±``shear`` degrees, and ``T``
    puts the origin at ``(0.5 ± translate)`` of the output. Always draws 8 values.
    """
    (in_h, in_w), (out_h, out_w) = in_size, out_size
    p = rng.uniform(-perspective, perspective, size=2)
    angle = math.radians(rng.uniform(-degrees, degrees))
    s = rng.uniform(1 - scale, 1 + scale)
    sh = np.tan(np.radians(rng.uniform(-shear, shear, size=2)))
    t = rng.uniform(0.5 - translate, 0.5 + translate, size=2) * (out_w, out_h)

    C = np.array([[1, 0, -in_w / 2], [0, 1, -in_h / 2], [0, 0, 1]])
    P = np.array([[1, 0, 0], [0, 1, 0], [p[0], p[1], 1]])
    # positive angles turn counter-clockwise on screen (y points down), as cv2 does
    cos, sin = s * math.cos(angle), s * math.sin(angle)
    R = np.array([[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]])
    S = np.array([[1, sh[0], 0], [sh[1], 1, 0], [0, 0, 1]])
    T = np.array([[1, 0, t[0]], [0, 1, t[1]], [0, 0, 1]])
    return T @ S @ R @ P @ C, s


def warp_boxes(boxes: np.ndarray, M: np.ndarray, width: int, height: int) -> np.ndarray:
    """Map boxes by the 3×3 matrix ``M``: the box enclosing each box's 4 transformed corners,
    clipped to ``width × height``."""
    boxes = _boxes(boxes)
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)  # 4 corners per box
    xy = np.concatenate([corners, np.ones((len(corners), 1), np.float32)], 1) @ M.T
    xy = (xy[:, :2] / xy[:, 2:3]).reshape(-1, 4, 2)
    out = np.concatenate([xy.min(1), xy.max(1)], 1).astype(np.float32).reshape(-1, 4)
    return _clip(out, width, height)


def box_candidates(
    before: np.ndarray,
    after: np.ndarray,
    wh_thr: float = 2.0,
    area_thr: float = 0.1,
    ar_thr: float = 100.0,
    eps: float = 1e-16,
) -> np.ndarray:
    """Boolean mask of warped boxes worth keeping: wider and taller than ``wh_thr`` px, at least
    ``area_thr`` of their (scaled) original area left, and aspect ratio under ``ar_thr``."""
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (
        (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (aspect < ar_thr)
    )


def random_affine(
    img: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    degrees: float = 0.0,
    translate: float = 0.1,
    scale: float = 0.5,
    shear: float = 0.0,
    perspective: float = 0.0,
    border: tuple[int, int] = (0, 0),
    out_size: tuple[int, int] | None = None,
) -> Sample:
    """YOLOv5's ``random_perspective``: one random warp (``affine_matrix``) of image and boxes.

    The output is ``out_size`` ``(h, w)``, by default the input grown by ``2 * border``
    (``(rows, cols)``); ``border=(-s//2, -s//2)`` crops a ``2s`` mosaic back to ``s``. Boxes
    keep only ``box_candidates`` against their original size times the drawn scale.
    """
    h, w = img.shape[:2]
    out_h, out_w = out_size or (h + 2 * border[0], w + 2 * border[1])
    M, s = affine_matrix(rng, (h, w), (out_h, out_w), degrees, translate, scale, shear, perspective)
    if (out_h, out_w) != (h, w) or (M != np.eye(3)).any():
        # boxes put pixel i on [i, i + 1) but cv2 puts it at i: conjugate by a half-pixel shift
        # so the pixels land where the boxes go (YOLOv5 is up to 0.5·|1 - scale| px off)
        half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
        M_px = np.linalg.inv(half) @ M @ half
        fill = (PAD_VALUE,) * 3
        if perspective:
            img = cv2.warpPerspective(img, M_px, (out_w, out_h), borderValue=fill)
        else:
            img = cv2.warpAffine(img, M_px[:2], (out_w, out_h), borderValue=fill)
    boxes, labels = _boxes(boxes), np.asarray(labels, dtype=np.int64).reshape(-1)
    warped = warp_boxes(boxes, M, out_w, out_h)
    keep = box_candidates(boxes * np.float32(s), warped)
    return img, warped[keep], labels[keep]


# ------------------------------------------------------------------------- blend, colour, flip
def mixup(
    a: Sample, b: Sample, rng: np.random.Generator, alpha: float = 32.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """MixUp (Zhang et al., 2018): ``r * a + (1 - r) * b`` with ``r ~ Beta(alpha, alpha)``;
    both samples' boxes and labels are kept. Returns image, boxes, labels and ``r``."""
    if a[0].shape != b[0].shape:
        raise ValueError(f"mixup needs equally sized images, got {a[0].shape} and {b[0].shape}")
    r = float(rng.beta(alpha, alpha))
    img = a[0].astype(np.float32) * r + b[0].astype(np.float32) * (1 - r)
    boxes = np.concatenate([_boxes(a[1]), _boxes(b[1])])
    labels = np.concatenate([np.asarray(x, dtype=np.int64).reshape(-1) for x in (a[2], b[2])])
    return np.rint(img).astype(np.uint8), boxes, labels, r


def hsv_gains(
    rng: np.random.Generator, hgain: float = 0.015, sgain: float = 0.7, vgain: float = 0.4
) -> np.ndarray:
    """Random hue, saturation and value multipliers ``1 ± gain`` (always draws 3 values)."""
    return rng.uniform(-1, 1, size=3) * (hgain, sgain, vgain) + 1


def apply_hsv(img: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Multiply an RGB image's hue (cyclic), saturation and value by ``gains`` via lookup
    tables in OpenCV's 8-bit HSV; returns a new image (identity gains return a copy)."""
    if np.all(gains == 1):
        return img.copy()  # the 8-bit HSV round trip is lossy, so skip it
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float64)
    luts = (
        ((x * gains[0]) % 180).astype(np.uint8),  # OpenCV 8-bit hue spans [0, 180)
        np.clip(x * gains[1], 0, 255).astype(np.uint8),
        np.clip(x * gains[2], 0, 255).astype(np.uint8),
    )
    hsv = cv2.merge([cv2.LUT(c, lut) for c, lut in zip((hue, sat, val), luts, strict=True)])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def augment_hsv(
    img: np.ndarray,
    rng: np.random.Generator,
    hgain: float = 0.015,
    sgain: float = 0.7,
    vgain: float = 0.4,
) -> np.ndarray:
    """YOLOv5 colour jitter: random ``hsv_gains`` applied by ``apply_hsv``."""
    return apply_hsv(img, hsv_gains(rng, hgain, sgain, vgain))


def random_flip(
    img: np.ndarray,
    boxes: np.ndarray,
    rng: np.random.Generator,
    p_lr: float = 0.5,
    p_ud: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Flip left-right with probability ``p_lr`` and up-down with ``p_ud`` (always draws 2)."""
    h, w = img.shape[:2]
    boxes = _boxes(boxes).copy()
    flip_lr, flip_ud = rng.random(2) < (p_lr, p_ud)
    if flip_lr:
        img = img[:, ::-1]
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    if flip_ud:
        img = img[::-1]
        boxes[:, [1, 3]] = h - boxes[:, [3, 1]]
    return np.ascontiguousarray(img), boxes


# ------------------------------------------------------------------------- albumentations
def albu_pipeline(p: float = 0.01) -> A.Compose | None:
    """YOLOv5's extra pixel noise: Blur, MedianBlur, ToGray and CLAHE, each with probability
    ``p``, box-aware (``pascal_voc`` boxes, ``labels`` field). ``None`` when ``p <= 0``."""
    if p <= 0:
        return None
    ops = [A.Blur(p=p), A.MedianBlur(p=p), A.ToGray(p=p), A.CLAHE(p=p)]
    bbox_params = A.BboxParams(format="pascal_voc", label_fields=["labels"], clip=True)
    with warnings.catch_warnings():
        # these ops never move boxes; bbox_params is there for geometric ops added later
        warnings.filterwarnings("ignore", "Got processor for bboxes", UserWarning)
        return A.Compose(ops, bbox_params=bbox_params, seed=0)


def apply_albu(
    pipeline: A.Compose,
    img: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
) -> Sample:
    """Run ``pipeline`` seeded from ``rng`` (one draw), so the same ``rng`` state gives the same
    output. Boxes the pipeline drops are dropped with their labels."""
    seed_pipeline(pipeline, int(rng.integers(2**32)))
    out = pipeline(image=img, bboxes=_boxes(boxes), labels=np.asarray(labels, dtype=np.int64))
    return (
        out["image"],
        _boxes(out["bboxes"]),
        np.asarray(out["labels"], dtype=np.int64).reshape(-1),
    )
