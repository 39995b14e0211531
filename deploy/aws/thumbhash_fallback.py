"""A pure-Python stand-in for ``fast_thumbhash``, which publishes no Linux arm64 wheel.

``deploy/aws/package.py`` copies it into an arm64 Lambda package as ``fast_thumbhash.py``. The
encoder is Evan Wallace's ThumbHash reference (MIT), in double precision: on photographs it
gives the binding's bytes (``tests/test_aws.py`` compares them); on flat or tiny images a term
that cancels to zero may land one step (of 15) away, where the binding's single precision breaks
the tie the other way: the same picture. At pixpipe's 32×32 input it takes under 10 ms, next to
the hundreds spent rendering the variants.
"""

from __future__ import annotations

import math


def _round(x: float) -> int:
    return math.floor(x + 0.5)  # JavaScript's Math.round, as the reference does


def _encode_channel(
    channel: list[float], w: int, h: int, nx: int, ny: int
) -> tuple[float, list[float], float]:
    """DCT into a DC term and AC terms normalised to 0..1, with their scale."""
    dc, ac, scale = 0.0, [], 0.0
    for cy in range(ny):
        fy = [math.cos(math.pi / h * cy * (y + 0.5)) for y in range(h)]
        cx = 0
        while cx * ny < nx * (ny - cy):
            fx = [math.cos(math.pi / w * cx * (x + 0.5)) for x in range(w)]
            f = 0.0
            for y in range(h):
                row = channel[y * w : (y + 1) * w]
                f += fy[y] * sum(v * c for v, c in zip(row, fx, strict=True))
            f /= w * h
            if cx or cy:
                ac.append(f)
                scale = max(scale, abs(f))
            else:
                dc = f
            cx += 1
    if scale:
        ac = [0.5 + 0.5 / scale * f for f in ac]
    return dc, ac, scale


def rgba_to_thumb_hash(w: int, h: int, rgba: bytes) -> bytes:
    """The ThumbHash of a ``w``×``h`` RGBA image (at most 100×100)."""
    if w > 100 or h > 100:
        raise ValueError(f"{w}x{h} doesn't fit in 100x100")
    n = w * h
    alphas = [rgba[j + 3] / 255 for j in range(0, 4 * n, 4)]
    avg = [0.0, 0.0, 0.0]
    for i, alpha in enumerate(alphas):
        for c in range(3):
            avg[c] += alpha / 255 * rgba[4 * i + c]
    avg_a = sum(alphas)
    if avg_a:
        avg = [v / avg_a for v in avg]
    has_alpha = avg_a < n
    l_limit = 5 if has_alpha else 7  # fewer luminance bits when there is alpha
    lx = max(1, _round(l_limit * w / max(w, h)))
    ly = max(1, _round(l_limit * h / max(w, h)))
    lum, p, q = [], [], []
    for i, alpha in enumerate(alphas):  # RGBA → LPQA, composited atop the average colour
        r, g, b = (avg[c] * (1 - alpha) + alpha / 255 * rgba[4 * i + c] for c in range(3))
        lum.append((r + g + b) / 3)
        p.append((r + g) / 2 - b)
        q.append(r - g)
    l_dc, l_ac, l_scale = _encode_channel(lum, w, h, max(3, lx), max(3, ly))
    p_dc, p_ac, p_scale = _encode_channel(p, w, h, 3, 3)
    q_dc, q_ac, q_scale = _encode_channel(q, w, h, 3, 3)
    landscape = w > h
    header24 = (_round(63 * l_dc) | _round(31.5 + 31.5 * p_dc) << 6
                | _round(31.5 + 31.5 * q_dc) << 12 | _round(31 * l_scale) << 18
                | int(has_alpha) << 23)  # fmt: skip
    header16 = ((ly if landscape else lx) | _round(63 * p_scale) << 3
                | _round(63 * q_scale) << 9 | int(landscape) << 15)  # fmt: skip
    out = [header24 & 255, header24 >> 8 & 255, header24 >> 16, header16 & 255, header16 >> 8]
    channels = [l_ac, p_ac, q_ac]
    if has_alpha:
        a_dc, a_ac, a_scale = _encode_channel(alphas, w, h, 5, 5)
        out.append(_round(15 * a_dc) | _round(15 * a_scale) << 4)
        channels.append(a_ac)
    factors = [_round(15 * f) for ac in channels for f in ac]
    for i in range(0, len(factors), 2):
        out.append(factors[i] | (factors[i + 1] << 4 if i + 1 < len(factors) else 0))
    return bytes(out)


__all__ = ["rgba_to_thumb_hash"]
