"""Synthetic identities: procedurally drawn faces written as identity folders + a pairs CSV.

Each identity is a set of geometric traits (face outline, eye spacing / size / height, brows,
nose, mouth, ears, hairline and fringe); each image of it adds a pose (in-plane rotation,
shift, scale and a fake yaw that compresses one side of the face), an expression (mouth curve,
eye opening), lighting (gain, a linear gradient, a colour cast), blur, noise and a random
background. Skin, hair and eye colours come from small palettes that many identities share, so
telling identities apart takes their geometry. Faces sit on the ArcFace 112×112 template
(eyes, nose and mouth near ``align.ARCFACE_TEMPLATE``) as aligned crops do.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from visionzoo.recognition.align import ARCFACE_TEMPLATE
from visionzoo.recognition.pairs import balanced_pairs, write_pairs_csv
from visionzoo.registry import register_generator

# Shared palettes (RGB): a colour never identifies a person on its own.
SKIN = np.array([[241, 206, 177], [224, 172, 135], [198, 140, 98], [160, 106, 70], [110, 72, 50]])
HAIR = np.array([[30, 24, 20], [85, 55, 35], [160, 120, 70], [200, 170, 110], [120, 120, 120]])
IRIS = np.array([[60, 40, 25], [70, 110, 150], [80, 110, 60], [40, 40, 40]])
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel geometry, so small trait differences show
_FIX = 1 << _SHIFT
# Huffman-only PNG: the noise leaves little for LZ77 to find, and it is 2-3x faster to write.
_PNG_FAST = [
    cv2.IMWRITE_PNG_COMPRESSION, 1,
    cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
]  # fmt: skip


@dataclass(frozen=True)
class FaceIdentity:
    """One person's traits, in pixels of a 112 crop (scaled to the output size)."""

    face_w: float  # half-width of the face outline
    face_h: float  # half-height of the face outline
    face_p: float  # superellipse exponent: 2 = oval, larger = squarer jaw
    chin: float  # how far the lower half narrows towards the chin (0 = not at all)
    eye_dx: float  # half the distance between the eye centres
    eye_y: float  # eye-line height
    eye_rx: float  # eye half-width
    eye_ry: float  # eye half-height
    brow_gap: float  # brow height above the eye centre
    brow_tilt: float  # brow slope (rad; positive = outer end lower)
    brow_len: float  # brow half-length
    brow_thick: float  # brow thickness
    nose_len: float  # nose tip below the eye line
    nose_w: float  # nostril half-width
    mouth_y: float  # mouth height
    mouth_w: float  # mouth half-width
    mouth_h: float  # lip thickness
    smile: float  # resting mouth curvature
    ear: float  # ear half-height (0 = hidden by hair)
    hairline: float  # hairline height above the eye line
    part: float  # fringe parting: -1 left .. 1 right, 0 = straight fringe
    hair_volume: float  # how far hair extends beyond the face sides
    skin: np.ndarray  # (3,) RGB
    hair: np.ndarray  # (3,) RGB
    iris: np.ndarray  # (3,) RGB


def sample_identity(rng: np.random.Generator) -> FaceIdentity:
    """Draw one identity's traits."""
    u = rng.uniform
    jitter = rng.normal(0, 6, 3)
    return FaceIdentity(
        face_w=u(30, 42),
        face_h=u(42, 56),
        face_p=u(1.8, 3.2),
        chin=u(0.0, 0.35),
        eye_dx=u(13, 21),
        eye_y=u(46, 57),
        eye_rx=u(4, 8),
        eye_ry=u(2, 4.5),
        brow_gap=u(6, 13),
        brow_tilt=u(-0.35, 0.35),
        brow_len=u(5, 10),
        brow_thick=u(1.0, 3.5),
        nose_len=u(12, 24),
        nose_w=u(4, 10),
        mouth_y=u(84, 97),
        mouth_w=u(8, 18),
        mouth_h=u(1.5, 6),
        smile=u(-3, 4),
        ear=u(0, 10) if u() < 0.6 else 0.0,
        hairline=u(14, 34),
        part=u(-1, 1) if u() < 0.7 else 0.0,
        hair_volume=u(0, 10),
        skin=np.clip(SKIN[rng.integers(len(SKIN))] + jitter, 0, 255),
        hair=HAIR[rng.integers(len(HAIR))].astype(float),
        iris=IRIS[rng.integers(len(IRIS))].astype(float),
    )


def _pt(x: float, y: float, k: float) -> tuple[int, int]:
    return int(round(x * k * _FIX)), int(round(y * k * _FIX))


def _poly(canvas: np.ndarray, points: np.ndarray, k: float, colour: np.ndarray) -> None:
    pts = np.round(points * k * _FIX).astype(np.int32)
    cv2.fillPoly(canvas, [pts], colour.tolist(), cv2.LINE_AA, _SHIFT)


def _ellipse(
    canvas: np.ndarray, cx: float, cy: float, rx: float, ry: float, k: float, colour: np.ndarray
) -> None:
    """A filled axis-aligned ellipse, centre and half-axes in 112-crop pixels (scaled by k)."""
    axes = (max(1, int(round(rx * k * _FIX))), max(1, int(round(ry * k * _FIX))))
    cv2.ellipse(canvas, _pt(cx, cy, k), axes, 0, 0, 360, colour.tolist(), -1, cv2.LINE_AA, _SHIFT)


def _draw_face(f: FaceIdentity, rng: np.random.Generator, size: int) -> np.ndarray:
    """The identity in frontal pose on a random background, ``(size, size, 3)`` uint8 RGB
    (cv2 anti-aliases only 8-bit images)."""
    k = size / 112
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[:] = rng.uniform(40, 230, 3).round()
    cx = float(ARCFACE_TEMPLATE[2, 0])
    cy = f.eye_y + 14
    skin, hair, dark = f.skin, f.hair, f.skin * 0.55
    # Hair mass behind the head, then ears, then the face outline (superellipse + chin taper).
    _ellipse(canvas, cx, cy - 8, f.face_w + f.hair_volume, f.face_h * 0.9, k, hair)
    if f.ear:
        for side in (-1, 1):
            _ellipse(canvas, cx + side * f.face_w, f.eye_y + 6, 4.5, f.ear, k, skin * 0.9)
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    x = np.sign(c) * np.abs(c) ** (2 / f.face_p) * f.face_w
    y = np.sign(s) * np.abs(s) ** (2 / f.face_p) * f.face_h
    x *= 1 - f.chin * np.clip(s, 0, 1) ** 2
    _poly(canvas, np.stack([cx + x, cy + y], 1), k, skin)
    # Hair cap: the top of an ellipse round the head down to the temples, closed by a fringe
    # whose lower edge slopes with the parting.
    top = f.eye_y - f.hairline
    arc = np.linspace(np.pi - 0.3, 2 * np.pi + 0.3, 32)
    cap_w, cap_h = f.face_w + 0.3 * f.hair_volume + 2, f.face_h + 5
    cap = np.stack([cx + cap_w * np.cos(arc), cy + cap_h * np.sin(arc)], 1)
    xs = np.linspace(cx + f.face_w, cx - f.face_w, 24)
    edge = top + f.part * (xs - cx) * 0.25 + 3 * np.cos((xs - cx) / f.face_w * np.pi / 2)
    _poly(canvas, np.concatenate([cap, np.stack([xs, edge], 1)]), k, hair)
    # Eyes (white, iris, lid opening varies per image) and brows.
    opening = rng.uniform(0.6, 1.1)
    for side in (-1, 1):
        ex = cx + side * f.eye_dx
        _ellipse(canvas, ex, f.eye_y, f.eye_rx, f.eye_ry * opening, k, np.array([245.0] * 3))
        iris_r = min(f.eye_rx, f.eye_ry * opening) * 0.9
        _ellipse(canvas, ex, f.eye_y, iris_r, iris_r, k, f.iris)
        _ellipse(canvas, ex, f.eye_y, iris_r * 0.45, iris_r * 0.45, k, np.zeros(3))
        by = f.eye_y - f.brow_gap
        dx, dy = f.brow_len * np.cos(f.brow_tilt), f.brow_len * np.sin(f.brow_tilt)
        p0, p1 = (ex - side * dx, by - dy), (ex + side * dx, by + dy)
        thick = max(1, int(round(f.brow_thick * k)))
        cv2.line(
            canvas, _pt(*p0, k), _pt(*p1, k), (hair * 0.8).tolist(), thick, cv2.LINE_AA, _SHIFT
        )
    # Nose: a shaded ridge and two nostrils.
    tip = f.eye_y + f.nose_len
    ridge = np.array([[cx - 1.5, f.eye_y + 4], [cx + 1.5, f.eye_y + 4], [cx + f.nose_w, tip]])
    _poly(canvas, np.concatenate([ridge, [[cx - f.nose_w, tip]]]), k, skin * 0.85)
    for side in (-1, 1):
        _ellipse(canvas, cx + side * f.nose_w * 0.6, tip, 1.8, 1.2, k, dark)
    # Mouth: upper and lower lip curves, curvature = resting smile + expression.
    curve = f.smile + rng.normal(0, 1.5)
    mx = np.linspace(-f.mouth_w, f.mouth_w, 16)
    bend = curve * (mx / f.mouth_w) ** 2
    upper = np.stack([cx + mx, f.mouth_y - bend - f.mouth_h / 2], 1)
    lower = np.stack([cx + mx[::-1], f.mouth_y - bend[::-1] + f.mouth_h / 2], 1)
    _poly(canvas, np.concatenate([upper, lower]), k, np.array([170.0, 70, 70]) * 0.5 + skin * 0.4)
    return canvas


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates relative to the image centre, ``(size, size)`` float32 each."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - np.float32(size / 2)
    xx.setflags(write=False)  # shared by every call through the cache
    yy.setflags(write=False)
    return xx, yy


def _pose_and_light(
    image: np.ndarray, rng: np.random.Generator, nuisance: float = 1.0
) -> np.ndarray:
    """One remap for rotation, scale, shift and fake yaw; then lighting, blur and noise, each
    scaled by ``nuisance`` (1 = the recognition set's spread, 0 = none; the same draws either
    way, so a seed gives the same faces)."""
    size = image.shape[0]
    n = np.float32(nuisance)
    xx, yy = _grid(size)
    angle = np.deg2rad(rng.uniform(-10, 10)) * n
    scale = 1 + (rng.uniform(0.9, 1.1) - 1) * n
    shift = (rng.uniform(-0.05, 0.05, 2) * size * n).astype(np.float32)
    yaw = np.float32(rng.uniform(-0.35, 0.35) / size) * n
    # Destination -> source: undo shift, rotation and scale about the centre ...
    dx, dy = xx - shift[0], yy - shift[1]
    c, s = np.float32(np.cos(angle) / scale), np.float32(np.sin(angle) / scale)
    sx, sy = c * dx + s * dy, c * dy - s * dx
    # ... then a yaw: one half of the face is sampled wider (compressed), the other narrower.
    sx *= 1 + yaw * sx
    half = np.float32(size / 2)
    out = cv2.remap(image, sx + half, sy + half, cv2.INTER_LINEAR, None, cv2.BORDER_REFLECT)
    out = out.astype(np.float32)
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-9
    ramp = (xx * np.float32(direction[0]) + yy * np.float32(direction[1])) / np.float32(size)
    gain = 1 + (np.float32(rng.uniform(0.7, 1.25)) - 1) * n
    light = gain * (1 + np.float32(rng.uniform(0, 0.6)) * n * ramp)
    out *= light[..., None] * (1 + (rng.uniform(0.92, 1.08, 3) - 1) * n).astype(np.float32)
    sigma = rng.uniform(0, 1.4) * nuisance
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(rng.uniform(2, 9) * n)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def render_face(
    identity: FaceIdentity, rng: np.random.Generator, size: int = 112, nuisance: float = 1.0
) -> np.ndarray:
    """One image of ``identity``: ``(size, size, 3)`` uint8 RGB; ``nuisance`` scales its
    per-image pose, lighting, blur and noise (see ``_pose_and_light``)."""
    return _pose_and_light(_draw_face(identity, rng, size), rng, nuisance)


@register_generator("face_identities")
def write_identities(
    out_dir: Path,
    *,
    num_train_ids: int = 40,
    num_val_ids: int = 20,
    images_per_id: int = 10,
    size: int = 112,
    seed: int = 0,
) -> None:
    """Write ``train/<id>/<k>.png`` and ``val/<id>/<k>.png`` (disjoint identities) and
    ``val_pairs.csv`` (every same-identity val pair + as many different ones, paths relative
    to ``out_dir``)."""
    if images_per_id < 2 or num_val_ids < 2:
        raise ValueError("need images_per_id >= 2 and num_val_ids >= 2 to form val pairs")
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = {}
    for i in range(num_train_ids + num_val_ids):
        split = "train" if i < num_train_ids else "val"
        name = f"id{i:04d}"
        folder = out_dir / split / name
        folder.mkdir(parents=True)
        identity = sample_identity(rng)
        files = []
        for k in range(images_per_id):
            image = render_face(identity, rng, size)
            cv2.imwrite(str(folder / f"{k}.png"), image[..., ::-1], _PNG_FAST)
            files.append(f"{split}/{name}/{k}.png")
        if split == "val":
            groups[name] = files
    write_pairs_csv(out_dir / "val_pairs.csv", balanced_pairs(groups, seed=seed), root=out_dir)
