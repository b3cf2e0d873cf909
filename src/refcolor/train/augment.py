"""Geometry of training samples (``data.ClipDataset``): the random crop / zoom / flip of a clip and
of its flows, the smooth camera path that turns a still photo into a pseudo-video with its exact
flow, and the reference's small rotation and exposure / saturation jitter. Every random choice
comes from the caller's ``rng``."""
from __future__ import annotations

import cv2
import numpy as np


def crop_params(rng, canon_hw, size, zoom):
    z = float(rng.uniform(1.0, zoom))
    sh, sw = max(size[0], int(round(canon_hw[0] * z))), max(size[1], int(round(canon_hw[1] * z)))
    y0, x0 = int(rng.integers(0, sh - size[0] + 1)), int(rng.integers(0, sw - size[1] + 1))
    return (sh, sw), (y0, x0), bool(rng.random() < 0.5)


def apply_image(img, scaled, offset, flip, size, interp=cv2.INTER_LINEAR):
    if img.shape[:2] != scaled:
        img = cv2.resize(img, (scaled[1], scaled[0]), interpolation=interp)
    img = img[offset[0] : offset[0] + size[0], offset[1] : offset[1] + size[1]]
    return np.ascontiguousarray(img[:, ::-1] if flip else img)


def apply_flow(flow, mask, canon_hw, scaled, offset, flip, size):
    """Scale / crop / flip a canonical flow (H,W,2) and mask like the frames; out-of-crop targets are invalid."""
    sy, sx = scaled[0] / canon_hw[0], scaled[1] / canon_hw[1]
    f = apply_image(flow, scaled, offset, False, size) * np.array([sx, sy], np.float32)
    m = apply_image(mask, scaled, offset, False, size, cv2.INTER_NEAREST)
    if flip:
        f = np.ascontiguousarray(f[:, ::-1]) * np.array([-1.0, 1.0], np.float32)
        m = np.ascontiguousarray(m[:, ::-1])
    h, w = size
    x = np.arange(w, dtype=np.float32)[None] + f[..., 0]
    y = np.arange(h, dtype=np.float32)[:, None] + f[..., 1]
    m = m * ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1))
    return f, m.astype(np.float32)


def still_path(rng, img_hw, size, t_len):
    """Per-frame 3x3 maps output pixel -> photo pixel along a smooth random camera path."""
    h, w = img_hw
    base = min(h / size[0], w / size[1])  # photo pixels per output pixel when the view spans the photo

    def pose():
        return dict(s=base * rng.uniform(0.6, 0.9), rot=rng.uniform(-0.06, 0.06), px=rng.uniform(-3e-4, 3e-4) / base,
                    py=rng.uniform(-3e-4, 3e-4) / base, cx=rng.uniform(0.4, 0.6), cy=rng.uniform(0.4, 0.6))

    a = pose()
    drift = dict(s=a["s"] * rng.uniform(-0.03, 0.03), rot=rng.uniform(-0.015, 0.015), px=0.0, py=0.0,
                 cx=rng.uniform(-0.025, 0.025), cy=rng.uniform(-0.025, 0.025))
    mats = []
    for t in range(t_len):
        p = {k: a[k] + drift[k] * t for k in a}
        c, s = np.cos(p["rot"]) * p["s"], np.sin(p["rot"]) * p["s"]
        center_out = np.array([[1, 0, -size[1] / 2], [0, 1, -size[0] / 2], [0, 0, 1]])
        persp = np.array([[1, 0, 0], [0, 1, 0], [p["px"], p["py"], 1]])
        lin = np.array([[c, -s, p["cx"] * w], [s, c, p["cy"] * h], [0, 0, 1]])
        mats.append(lin @ persp @ center_out)
    return mats


def render_still(img, mat, size):
    return cv2.warpPerspective(img, mat, (size[1], size[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT)


def still_flow(mat_t, mat_prev, img_hw, size):
    """Exact flow from frame t to frame t-1 and its validity (source inside the photo and the frame)."""
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([xs, ys, np.ones_like(xs)], -1) @ mat_t.T  # photo coordinates
    src = pts[..., :2] / pts[..., 2:]
    back = pts @ np.linalg.inv(mat_prev).T
    prev = back[..., :2] / back[..., 2:]
    flow = (prev - np.stack([xs, ys], -1)).astype(np.float32)
    valid = ((src[..., 0] >= 0) & (src[..., 0] <= img_hw[1] - 1) & (src[..., 1] >= 0) & (src[..., 1] <= img_hw[0] - 1)
             & (prev[..., 0] >= 0) & (prev[..., 0] <= w - 1) & (prev[..., 1] >= 0) & (prev[..., 1] <= h - 1))
    return flow, valid.astype(np.float32)


def jitter_reference(rng, rgb):
    """Mild exposure (L gain/offset) and saturation (ab gain) jitter of a reference, in CIELAB."""
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    lab[..., 0] = lab[..., 0] * rng.uniform(0.9, 1.1) + rng.uniform(-5, 5)
    lab[..., 1:] *= rng.uniform(0.9, 1.1)
    lab[..., 0] = np.clip(lab[..., 0], 0, 100)
    out = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def rotate(rng, img, max_deg=5.0):
    ang = rng.uniform(-max_deg, max_deg)
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), ang, 1.0 + abs(np.sin(np.radians(ang))) * 0.6)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
