"""YOLO-style detection augmentation: boxes checked against the pixels they should cover."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np
import pytest

from visionzoo.detection import transforms as T

GREY = 114
RED = (200, 30, 30)


def _image(h: int, w: int, fill: int = GREY) -> np.ndarray:
    return np.full((h, w, 3), fill, dtype=np.uint8)


def _draw(img: np.ndarray, box, colour) -> None:
    x1, y1, x2, y2 = (int(v) for v in box)
    img[y1:y2, x1:x2] = colour


def _mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight xyxy box around the True pixels of ``mask``."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def _red_weight(img: np.ndarray) -> np.ndarray:
    """How much of each pixel is RED rather than GREY, from the red channel (0..1)."""
    return (img[..., 0].astype(np.float64) - GREY) / (RED[0] - GREY)


def _centroid(weight: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[: weight.shape[0], : weight.shape[1]] + 0.5  # pixel centres
    return np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()


def _red_sample(h: int = 96, w: int = 128, box=(40, 30, 80, 60)):
    img = _image(h, w)
    _draw(img, box, RED)
    return img, np.array([box], dtype=np.float32), np.array([3])


# ------------------------------------------------------------------------------ resizing
@pytest.mark.parametrize("hw", [(50, 100), (100, 50), (64, 64), (200, 120)])
def test_resize_long_side(hw):
    img, boxes, _ = _red_sample(*hw, box=(10, 10, 30, 40))
    out, out_boxes, scale = T.resize_long_side(img, boxes, 128)
    assert max(out.shape[:2]) == 128 and scale == 128 / max(hw)
    np.testing.assert_allclose(out_boxes, boxes * scale, rtol=1e-6)


@pytest.mark.parametrize("auto", [False, True])
@pytest.mark.parametrize("hw", [(480, 640), (640, 480), (333, 517), (100, 100), (700, 90)])
@pytest.mark.parametrize("scaleup", [True, False])
def test_letterbox_round_trip(hw, auto, scaleup):
    h, w = hw
    img = _image(h, w, fill=10)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1, (6, 2, 2)) * (w, h)
    boxes = np.concatenate([xy.min(1), xy.max(1)], 1).astype(np.float32)
    _draw(img, (w // 4, h // 4, w // 2, h // 2), RED)

    out, lb_boxes, (ratio, pad) = T.letterbox(img, boxes, 320, auto=auto, scaleup=scaleup)
    oh, ow = out.shape[:2]
    if auto:
        assert oh % 32 == 0 and ow % 32 == 0 and oh <= 320 and ow <= 320
        assert min(oh - round(h * ratio), ow - round(w * ratio)) < 32  # smallest multiple
    else:
        assert (oh, ow) == (320, 320)
    if not scaleup:
        assert ratio <= 1
    back = T.scale_boxes_back(lb_boxes, ratio, pad, (h, w))
    np.testing.assert_allclose(back, boxes, atol=1e-3)

    # the padding is grey and the drawn rectangle lands where its mapped box says
    left, top = int(pad[0]), int(pad[1])
    assert (out[:, :left] == GREY).all() and (out[:top] == GREY).all()
    rect = np.array([[w // 4, h // 4, w // 2, h // 2]], np.float32)
    _, (mapped,), _ = T.letterbox(img, rect, 320, auto=auto, scaleup=scaleup)
    m = int(ratio) + 1  # bilinear upscaling blurs the edges over about ``ratio`` px
    inner = out[int(mapped[1]) + m : int(mapped[3]) - m, int(mapped[0]) + m : int(mapped[2]) - m]
    assert (inner == RED).all()


def test_letterbox_rectangular_target_and_clipping():
    img = _image(100, 200)
    out, _, (ratio, pad) = T.letterbox(img, np.zeros((0, 4)), (96, 320), scaleup=False)
    assert out.shape == (96, 320, 3) and ratio == pytest.approx(0.96) and pad == (64.0, 0.0)
    outside = np.array([[-20, -5, 400, 90]], np.float32)
    np.testing.assert_allclose(
        T.scale_boxes_back(outside, 1.0, (0, 0), (80, 300)), [[0, 0, 300, 80]]
    )


# ------------------------------------------------------------------------------ mosaic
def test_mosaic4_boxes_match_pixels():
    s = 64
    shapes = [(64, 48), (40, 64), (64, 64), (30, 64)]
    rects = [
        [(5, 5, 30, 40), (32, 50, 46, 62)],
        [(10, 2, 60, 20)],
        [(0, 0, 20, 20), (40, 30, 64, 64)],
        [(3, 3, 61, 27)],
    ]
    colours = iter(
        [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0), (0, 250, 250), (250, 0, 250)]
    )
    items, palette = [], {}
    for (h, w), boxes in zip(shapes, rects, strict=True):
        img = _image(h, w, fill=0)
        labels = []
        for box in boxes:
            label = len(palette)
            palette[label] = next(colours)
            _draw(img, box, palette[label])
            labels.append(label)
        items.append((img, np.array(boxes, np.float32), np.array(labels)))

    for seed in range(8):
        canvas, boxes, labels = T.mosaic4(items, s, np.random.default_rng(seed))
        assert canvas.shape == (2 * s, 2 * s, 3) and len(boxes) == len(labels)
        assert (boxes >= 0).all() and (boxes <= 2 * s).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        for box, label in zip(boxes, labels, strict=True):
            x1, y1, x2, y2 = box.astype(int)
            assert (box == box.astype(int)).all()  # integer centre and offsets: exact pixels
            region = canvas[y1:y2, x1:x2].reshape(-1, 3)
            assert (region == palette[label]).all()
            # every pixel of that colour in the canvas is inside the box: the box is tight
            assert (canvas == palette[label]).all(-1).sum() == region.shape[0]
        # labels missing from the output are fully clipped away: their colour is gone too
        for label in set(palette) - set(labels.tolist()):
            assert not (canvas == palette[label]).all(-1).any()


def test_mosaic4_needs_four():
    with pytest.raises(ValueError, match="exactly 4"):
        T.mosaic4([_red_sample()] * 3, 64, np.random.default_rng(0))


# ------------------------------------------------------------------------------ affine
@pytest.mark.parametrize("seed", range(3))
def test_affine_translation_only(seed):
    img, boxes, labels = _red_sample()
    kw = {"degrees": 0.0, "translate": 0.2, "scale": 0.0}
    out, out_boxes, out_labels = T.random_affine(
        img, boxes, labels, np.random.default_rng(seed), **kw
    )
    M, s = T.affine_matrix(np.random.default_rng(seed), (96, 128), (96, 128), **kw)
    np.testing.assert_array_equal(M[:2, :2], np.eye(2))
    assert s == 1 and M[:2, 2].any()
    shift = np.tile(M[:2, 2], 2)
    np.testing.assert_allclose(out_boxes, boxes + shift, atol=1e-4)
    np.testing.assert_array_equal(out_labels, labels)
    # the warped pixels moved by the same amount (the mass centre of the red rectangle)
    centre = (out_boxes[0, :2] + out_boxes[0, 2:]) / 2
    np.testing.assert_allclose(_centroid(_red_weight(out)), centre, atol=0.05)


@pytest.mark.parametrize("seed", range(3))
def test_affine_scale_only_about_centre(seed):
    img, boxes, labels = _red_sample()
    # blurred edges: a smooth image keeps its mass centre under resampling, a hard edge aliases
    img = cv2.GaussianBlur(img, (0, 0), 2)
    kw = {"degrees": 0.0, "translate": 0.0, "scale": 0.5}
    out, out_boxes, _ = T.random_affine(img, boxes, labels, np.random.default_rng(seed), **kw)
    _, s = T.affine_matrix(np.random.default_rng(seed), (96, 128), (96, 128), **kw)
    centre = np.array([64, 48, 64, 48], np.float32)
    np.testing.assert_allclose(out_boxes, centre + s * (boxes - centre), atol=1e-3)
    weight = _red_weight(out)
    assert weight.sum() == pytest.approx(np.prod(out_boxes[0, 2:] - out_boxes[0, :2]), rel=0.02)
    # pixels and boxes agree to well under the half-pixel offset of a naive cv2 warp
    box_centre = (out_boxes[0, :2] + out_boxes[0, 2:]) / 2
    np.testing.assert_allclose(_centroid(weight), box_centre, atol=0.05)


@pytest.mark.parametrize("seed", range(4))
def test_affine_rotation_box_encloses_pixels(seed):
    img, boxes, labels = _red_sample()
    out, out_boxes, _ = T.random_affine(
        img,
        boxes,
        labels,
        np.random.default_rng(seed),
        degrees=45.0,
        translate=0.0,
        scale=0.2,
        shear=5.0,
    )
    red = np.abs(out.astype(int) - GREY).max(-1) > 8
    tight = _mask_box(red)
    (box,) = out_boxes
    assert (tight[:2] >= box[:2] - 1).all() and (tight[2:] <= box[2:] + 1).all()
    assert np.abs(tight - box).max() < 3  # and it is not much looser than the pixels


def test_affine_crop_drops_boxes_pushed_out():
    s = 64
    img = _image(2 * s, 2 * s)
    boxes = np.array(
        [
            [0, 0, 20, 20],  # fully outside the central crop
            [20, 40, 44, 60],  # half inside: kept and clipped
            [10, 40, 34, 60],  # 2 px wide once clipped
            [0, 0, 40, 40],  # 4% of its area left
            [40, 40, 60, 70],  # fully inside
        ],
        np.float32,
    )
    out, kept, labels = T.random_affine(
        img,
        boxes,
        np.arange(5),
        np.random.default_rng(0),
        translate=0.0,
        scale=0.0,
        border=(-s // 2, -s // 2),
    )
    assert out.shape == (s, s, 3)
    np.testing.assert_array_equal(labels, [1, 4])
    np.testing.assert_allclose(kept, [[0, 8, 12, 28], [8, 8, 28, 38]])


def test_box_candidates_rules():
    before = np.array([[0, 0, 10, 10]] * 3 + [[0, 0, 300, 2.5]], np.float32)
    after = np.array(
        [
            [0, 0, 10, 10],  # unchanged: kept
            [0, 0, 2, 10],  # 2 px wide
            [0, 0, 3, 3],  # 9% of its area left
            [0, 0, 300, 2.5],  # aspect ratio 120
        ],
        np.float32,
    )
    np.testing.assert_array_equal(T.box_candidates(before, after), [True, False, False, False])


def test_affine_out_size_and_identity():
    img, boxes, labels = _red_sample()
    out = T.random_affine(img, boxes, labels, np.random.default_rng(0), out_size=(50, 70))[0]
    assert out.shape == (50, 70, 3)
    same = T.random_affine(img, boxes, labels, np.random.default_rng(0), translate=0, scale=0)
    np.testing.assert_array_equal(same[0], img)
    np.testing.assert_array_equal(same[1], boxes)


# ------------------------------------------------------------------------ blend, colour, flip
def test_mixup_blend_and_concat():
    rng = np.random.default_rng(1)
    a = (rng.integers(0, 256, (16, 24, 3), dtype=np.uint8), np.array([[1, 2, 3, 4]]), np.array([0]))
    b = (
        rng.integers(0, 256, (16, 24, 3), dtype=np.uint8),
        np.array([[5, 6, 7, 8]] * 2),
        np.array([1, 2]),
    )
    img, boxes, labels, r = T.mixup(a, b, np.random.default_rng(0))
    assert 0 < r < 1 and img.dtype == np.uint8
    np.testing.assert_allclose(img, r * a[0].astype(float) + (1 - r) * b[0], atol=0.5 + 1e-3)
    np.testing.assert_array_equal(boxes, [[1, 2, 3, 4], [5, 6, 7, 8], [5, 6, 7, 8]])
    np.testing.assert_array_equal(labels, [0, 1, 2])
    with pytest.raises(ValueError, match="equally sized"):
        T.mixup(a, (b[0][:8], *b[1:]), np.random.default_rng(0))


def test_hsv_zero_gains_is_identity():
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = T.augment_hsv(img, np.random.default_rng(0), 0.0, 0.0, 0.0)
    np.testing.assert_array_equal(out, img)
    assert out is not img


def test_hsv_keeps_grey_grey_and_scales_value():
    ramp = np.repeat(np.arange(256, dtype=np.uint8), 3).reshape(1, 256, 3)
    for seed in range(5):
        out = T.augment_hsv(ramp, np.random.default_rng(seed), 0.5, 0.9, 0.5)
        assert (out == out[..., :1]).all()  # no hue or saturation appears on grey
        v = out[0, :, 0].astype(int)
        assert (np.diff(v) >= 0).all()  # value is a monotone rescaling
    out = T.apply_hsv(ramp, np.array([1.0, 1.0, 0.5]))
    np.testing.assert_array_equal(out[0, :, 0], np.arange(256) // 2)


def test_hsv_hue_and_saturation_on_rgb():
    """Reference: colorsys on RGB. A BGR mix-up would move these hues elsewhere entirely."""
    hues = [20, 50, 100, 160, 250, 340]
    colours = [np.rint(np.array(colorsys.hsv_to_rgb(h / 360, 1.0, 1.0)) * 255) for h in hues]
    img = np.array([colours], dtype=np.uint8)
    out = T.apply_hsv(img, np.array([1.2, 0.5, 1.0]))
    for h, rgb in zip(hues, out[0] / 255, strict=True):
        hue, sat, val = colorsys.rgb_to_hsv(*rgb)
        assert abs((hue * 360 - h * 1.2 + 180) % 360 - 180) < 4
        assert sat == pytest.approx(0.5, abs=0.02) and val == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(("p_lr", "p_ud"), [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.0, 0.0)])
def test_flip_matches_numpy_flip(p_lr, p_ud):
    img, boxes, _ = _red_sample(box=(10, 5, 50, 30))
    out, out_boxes = T.random_flip(img, boxes, np.random.default_rng(0), p_lr=p_lr, p_ud=p_ud)
    expected = img[:, ::-1] if p_lr else img
    expected = expected[::-1] if p_ud else expected
    np.testing.assert_array_equal(out, expected)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out_boxes[0], _mask_box((out == RED).all(-1)))


# ------------------------------------------------------------------------- albumentations
def test_albu_keeps_boxes_and_is_off_at_zero():
    assert T.albu_pipeline(0.0) is None
    pipeline = T.albu_pipeline(1.0)
    img, boxes, labels = _red_sample()
    out, out_boxes, out_labels = T.apply_albu(
        pipeline, img, boxes, labels, np.random.default_rng(0)
    )
    assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_allclose(out_boxes, boxes)
    np.testing.assert_array_equal(out_labels, labels)
    empty = T.apply_albu(pipeline, img, np.zeros((0, 4)), np.zeros(0), np.random.default_rng(0))
    assert empty[1].shape == (0, 4) and empty[2].shape == (0,)


def test_albu_transforms_fire_independently():
    """Each op fires with its own probability: with p=0.5 some op changes ~94% of images
    (1 - 0.5**4), where ops sharing one seed would all fire together only half the time."""
    pipeline = T.albu_pipeline(0.5)
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    changed = [
        not np.array_equal(T.apply_albu(pipeline, img, [], [], np.random.default_rng(s))[0], img)
        for s in range(64)
    ]
    assert sum(changed) >= 52


# ------------------------------------------------------------------------------ determinism
def _mosaic_items():
    return [_red_sample(64, 48 + 4 * i, box=(5, 5, 30, 40)) for i in range(4)]


NOISE = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)
ALBU = T.albu_pipeline(0.5)  # one pipeline for all calls, as in a dataset


CALLS = {
    "mosaic4": lambda rng: T.mosaic4(_mosaic_items(), 64, rng),
    "random_affine": lambda rng: T.random_affine(
        *_red_sample(), rng, degrees=10, translate=0.1, scale=0.5, shear=2, perspective=1e-4
    ),
    "mixup": lambda rng: T.mixup(_red_sample(), _red_sample(), rng),
    "augment_hsv": lambda rng: T.augment_hsv(NOISE, rng),
    "random_flip": lambda rng: T.random_flip(*_red_sample()[:2], rng),
    "apply_albu": lambda rng: T.apply_albu(ALBU, NOISE, [[2, 3, 20, 30]], [1], rng),
}


def _flat(out) -> list[np.ndarray]:
    return [np.asarray(x) for x in (out if isinstance(out, tuple) else (out,))]


@pytest.mark.parametrize("name", list(CALLS))
def test_same_seed_same_output(name):
    call = CALLS[name]
    first = _flat(call(np.random.default_rng(7)))
    call(np.random.default_rng(8))  # shared state (the albumentations pipeline) must not leak
    for a, b in zip(first, _flat(call(np.random.default_rng(7))), strict=True):
        np.testing.assert_array_equal(a, b)
    outputs = [_flat(call(np.random.default_rng(s))) for s in range(6)]
    assert any(
        not all(np.array_equal(a, b) for a, b in zip(o, outputs[0], strict=True)) for o in outputs
    ), f"{name} ignores its rng"
