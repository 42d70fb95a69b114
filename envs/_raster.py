"""A NumPy rasteriser that draws the classic-control frames pixel for pixel as pygame does.

Why: with a CLIP reward every env step renders a frame, and CartPole's pygame draw (an
off-screen ``Surface``, SDL_gfx primitives, then a copy of the surface into an array)
cost more than the tiny reward model itself: training ran at about half the ground-truth
speed from rendering alone. The shapes are few and simple (a handful of polygons, a
circle, a line), so drawing them straight into a ``uint8`` array is cheaper and needs no
pygame import.

"The same picture" is meant literally: every primitive reproduces the integer arithmetic
of the pygame call it replaces, so a frame equals pygame's to the grey level:

* :meth:`Canvas.fill_polygon` is SDL_gfx's ``filledPolygon`` (``gfxdraw.filled_polygon``):
  scanlines over integer vertices, 16.16 fixed-point edge crossings, rounded span ends;
* :meth:`Canvas.aa_polygon` is SDL_gfx's ``aapolygon``: one Wu line per edge (32-bit error
  accumulator, 8-bit weights), its end point left out, after SDL_gfx's own clipping,
  blended as ``d + floor(a * (c - d) / 256)`` with ``a = (255 * w) >> 8``;
* :meth:`Canvas.fill_circle` / :meth:`Canvas.aa_circle` are ``filledCircle`` (midpoint
  spans) and ``aacircle`` (SDL_gfx's anti-aliased ellipse);
* :meth:`Canvas.aalines` is pygame's ``draw.aalines`` (float32 Xiaolin Wu lines with
  pygame-ce's end-point rules), :meth:`Canvas.hline` a one-pixel ``draw.line``.

Speed comes from two facts. Within one primitive the pixels are distinct (or put in
layers that keep each pixel's order), so a primitive is a handful of array operations
whatever its size. And SDL_gfx's arithmetic is translation-invariant, so a shape inside
the frame is memoised by its vertices relative to the first one (:meth:`Canvas.polygon`,
:meth:`Canvas.disc`): from its second appearance it is one store of its fill plus one
table lookup per layer of its outline. Episodes repeat few shapes (CartPole: a few hundred
pole outlines). ``tests/test_raster.py`` checks the frames against pygame's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

Color = tuple[int, int, int]

# Sentinel for "no edge crossing on this row" (sorts after every real crossing).
_NO_CROSSING = np.iinfo(np.int64).max


#: Weight code of a full-colour store (SDL_gfx's alpha-255 pixel) in an operation list.
STORE = 256

# Channel index, broadcast against (N, 1) weights and (N, 3) old values in table lookups.
_CHANNELS = np.arange(3)[None, :]

# Shapes (fill masks, outline operations) memoised by their vertices relative to their
# first vertex: SDL_gfx's integer arithmetic is translation-invariant, so a shape drawn
# again anywhere inside the frame has the same pixels. An episode repeats few shapes.
_SHAPE_CACHE = 4096


@lru_cache(maxsize=16)
def _blank(width: int, height: int, background: Color) -> np.ndarray:
    """A read-only frame of one colour, copied to start each frame."""
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[...] = background
    frame.flags.writeable = False
    return frame


_PIXEL = np.dtype((np.void, 3))


@lru_cache(maxsize=64)
def _cell(color: Color) -> np.void:
    """A colour as one 3-byte cell: stores of it are single copies, not 3-value broadcasts."""
    return np.array(color, dtype=np.uint8).view(_PIXEL)[0]


@lru_cache(maxsize=64)
def _rgb(color: Color) -> np.ndarray:
    out = np.array(color, dtype=np.int32)
    out.flags.writeable = False
    return out


def _alpha(weights: np.ndarray) -> np.ndarray:
    """SDL_gfx's blend alpha of 8-bit weights: ``(255 * w) >> 8``; :data:`STORE` gives 256.

    ``pixelColorWeight`` scales the colour's alpha (255) by the weight and blends
    ``old + ((a * (c - old)) >> 8)`` (an arithmetic shift: the floor); a full-colour store
    is the same formula with ``a = 256``.
    """
    w = np.asarray(weights, dtype=np.int32)
    return np.where(w == STORE, 256, (255 * w) >> 8).astype(np.int32)


Ops = tuple[np.ndarray, np.ndarray, np.ndarray]  # xs, ys, weights (alphas once layered)
#: A memoised shape at one frame width: per layer, flat pixel offsets and table offsets
#: (``None``: the layer only stores the colour).
Plan = tuple[tuple[np.ndarray, "np.ndarray | None"], ...]


@lru_cache(maxsize=64)
def _blend_table(color: Color) -> np.ndarray:
    """``T[((a * 3 + channel) * 256) + old]``: the blend of ``color`` at alpha ``a`` (0..256).

    One ``take`` from this table replaces the arithmetic of :func:`_alpha`'s formula.
    """
    old = np.arange(256, dtype=np.int64)
    alpha = np.arange(257, dtype=np.int64)[:, None, None]
    rgb = np.asarray(color, dtype=np.int64)[None, :, None]
    table = (old + ((alpha * (rgb - old)) >> 8)).astype(np.uint8).reshape(-1)
    table.flags.writeable = False
    return table


def _plan(layers: list[Ops], width: int) -> Plan:
    """Layers as flat pixel offsets (for a frame ``width`` wide) and table offsets."""
    plan = []
    for xs, ys, alpha in layers:
        offsets = (ys * width + xs).astype(np.int64)
        if (alpha == 256).all():
            plan.append((offsets, None))
        else:
            plan.append((offsets, ((alpha * 3 + _CHANNELS) * 256).astype(np.int32)))
    return tuple(plan)


def _layers(xs: np.ndarray, ys: np.ndarray, ws: np.ndarray) -> list[Ops]:
    """Split ordered pixel operations into layers of distinct pixels, in order.

    A pixel's n-th operation goes into layer n, so applying the layers one after the other
    (each as one vectorised gather/blend/store) keeps every pixel's own order; operations
    on different pixels commute. Weight-0 blends change nothing and are dropped.
    """
    keep = _alpha(ws) != 0
    xs, ys, ws = xs[keep], ys[keep], ws[keep]
    if len(xs) == 0:
        return []
    key = (ys.astype(np.int64) << 32) + xs.astype(np.int64)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    idx = np.arange(len(key))
    rank_sorted = idx - np.maximum.accumulate(np.where(first, idx, 0))
    rank = np.empty_like(rank_sorted)
    rank[order] = rank_sorted
    alpha = _alpha(ws)[:, None]
    return [(xs[rank == r], ys[rank == r], alpha[rank == r]) for r in range(int(rank.max()) + 1)]


class Canvas:
    """A ``(height, width, 3)`` uint8 frame filled with ``background``, and the primitives."""

    def __init__(self, width: int, height: int, background: Color) -> None:
        self.width, self.height = int(width), int(height)
        # Copying a cached frame is ~100x faster than broadcasting 3 values over it.
        self.pixels = _blank(self.width, self.height, tuple(background)).copy()
        # The same memory as (height, width) cells of 3 bytes (what stores write) and as
        # (height * width, 3) rows (what blends gather and scatter by flat index).
        self.cells = self.pixels.view(_PIXEL).reshape(self.height, self.width)
        self.flat = self.pixels.reshape(-1, 3)
        self.flat_cells = self.cells.reshape(-1)

    def _inside(self, x0: int, y0: int, x1: int, y1: int, margin: int = 1) -> bool:
        """Whether the box ``[x0, x1] x [y0, y1]`` grown by ``margin`` lies in the frame."""
        return (
            x0 - margin >= 0 and y0 - margin >= 0
            and x1 + margin < self.width and y1 + margin < self.height
        )

    # -- stores (full colour) -----------------------------------------------------------
    def hline(self, x1: int, x2: int, y: int, color: Color) -> None:
        """Pixels ``x1..x2`` (inclusive, either order) of row ``y``, clipped to the frame."""
        if x1 > x2:
            x1, x2 = x2, x1
        if not 0 <= y < self.height or x2 < 0 or x1 >= self.width:
            return
        self.cells[y, max(x1, 0) : min(x2, self.width - 1) + 1] = _cell(color)

    def vline(self, x: int, y1: int, y2: int, color: Color) -> None:
        """Pixels ``y1..y2`` (inclusive, either order) of column ``x``, clipped to the frame."""
        if y1 > y2:
            y1, y2 = y2, y1
        if not 0 <= x < self.width or y2 < 0 or y1 >= self.height:
            return
        self.cells[max(y1, 0) : min(y2, self.height - 1) + 1, x] = _cell(color)

    def _mask(self, x0: int, y0: int, mask: np.ndarray, color: Color) -> None:
        """Store ``color`` where ``mask`` (placed with its corner at ``(x0, y0)``) is set."""
        h, w = mask.shape
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x0 + w, self.width), min(y0 + h, self.height)
        if xa >= xb or ya >= yb:
            return
        sub = mask[ya - y0 : yb - y0, xa - x0 : xb - x0]
        self.cells[ya:yb, xa:xb][sub] = _cell(color)

    # -- ordered pixel operations -----------------------------------------------------------
    def apply(self, layers: list[Ops], color: Color, x0: int = 0, y0: int = 0) -> None:
        """Apply layered operations (see :func:`_layers`) offset by ``(x0, y0)``, skipping
        pixels off the frame (shapes that cross its border; :meth:`run` is the fast path)."""
        rgb = _rgb(tuple(color))
        for xs, ys, alpha in layers:
            xs, ys = xs + x0, ys + y0
            keep = (xs >= 0) & (xs < self.width) & (ys >= 0) & (ys < self.height)
            if not keep.all():
                xs, ys, alpha = xs[keep], ys[keep], alpha[keep]
            index = ys * self.width + xs
            old = self.flat[index].astype(np.int32)
            self.flat[index] = old + ((alpha * (rgb - old)) >> 8)

    def run(self, plan: Plan, color: Color, x0: int, y0: int) -> None:
        """Apply a memoised shape (see :func:`_plan`) at ``(x0, y0)``; it lies in the frame."""
        base = y0 * self.width + x0
        table = None
        for offsets, lookup in plan:
            index = offsets + base
            if lookup is None:
                self.flat_cells[index] = _cell(color)
            else:
                if table is None:
                    table = _blend_table(color)
                self.flat[index] = table.take(lookup + self.flat[index])

    # -- what the envs draw -------------------------------------------------------------------
    def polygon(self, vx: Sequence[int], vy: Sequence[int], color: Color) -> None:
        """``gfxdraw.filled_polygon`` then ``gfxdraw.aapolygon`` of the same vertices."""
        vx, vy = [int(v) for v in vx], [int(v) for v in vy]
        if len(vx) >= 3 and self._inside(min(vx), min(vy), max(vx), max(vy)):
            x0, y0 = vx[0], vy[0]
            rel = (tuple(x - x0 for x in vx), tuple(y - y0 for y in vy))
            if _seen_before((rel, self.width)):
                self.run(_polygon_plan(*rel, self.width), color, x0, y0)
                return
        self.fill_polygon(vx, vy, color)
        self.aa_polygon(vx, vy, color)

    def disc(self, x: int, y: int, radius: int, color: Color) -> None:
        """``gfxdraw.filled_circle`` then ``gfxdraw.aacircle`` of the same circle."""
        if radius > 0 and self._inside(x - radius, y - radius, x + radius, y + radius, margin=0):
            self.run(_disc_plan(radius, self.width), color, x, y)
            return
        self.fill_circle(x, y, radius, color)
        self.aa_circle(x, y, radius, color)

    # -- gfxdraw --------------------------------------------------------------------------
    def fill_polygon(self, vx: Sequence[int], vy: Sequence[int], color: Color) -> None:
        """``gfxdraw.filled_polygon`` of integer vertices."""
        if len(vx) < 3:
            return
        x0, y0 = int(vx[0]), int(vy[0])
        rel = (tuple(int(x) - x0 for x in vx), tuple(int(y) - y0 for y in vy))
        bx, by, mask = _fill_mask(*rel)
        if mask is not None:
            self._mask(x0 + bx, y0 + by, mask, color)

    def aa_polygon(self, vx: Sequence[int], vy: Sequence[int], color: Color) -> None:
        """``gfxdraw.aapolygon``: a Wu line along each edge, end points left out."""
        n = len(vx)
        if n < 3:
            return
        vx, vy = [int(v) for v in vx], [int(v) for v in vy]
        for i in range(n):
            j = (i + 1) % n
            clipped = _clip_line(vx[i], vy[i], vx[j], vy[j], self.width - 1, self.height - 1)
            if clipped is not None:
                self.apply([_distinct(*_line_ops(*clipped))], color)

    def fill_circle(self, x: int, y: int, radius: int, color: Color) -> None:
        """``gfxdraw.filled_circle``: the midpoint spans of ``radius`` around ``(x, y)``."""
        if radius <= 0:
            self.apply(_layers(*_single(x, y)), color)
            return
        if self._circle_visible(x, y, radius):
            self._mask(x - radius, y - radius, _filled_circle_mask(radius), color)

    def aa_circle(self, x: int, y: int, radius: int, color: Color) -> None:
        """``gfxdraw.aacircle``: SDL_gfx's anti-aliased ellipse with equal radii."""
        if radius <= 0 or not self._circle_visible(x, y, radius):
            return
        if self._inside(x - radius, y - radius, x + radius, y + radius, margin=0):
            self.run(_aa_circle_plan(radius, self.width), color, x, y)
        else:
            self.apply(_aa_circle_layers(radius), color, x, y)

    def _circle_visible(self, x: int, y: int, r: int) -> bool:
        return x + r >= 0 and x - r < self.width and y + r >= 0 and y - r < self.height

    # -- pygame.draw ----------------------------------------------------------------------
    def aalines(self, points: Sequence[tuple[float, float]], color: Color) -> None:
        """``pygame.draw.aalines(surface, color, False, points)`` (pygame-ce 2.x)."""
        _aalines(self, [(float(x), float(y)) for x, y in points], color)


def _single(x: int, y: int, weight: int = STORE) -> Ops:
    return np.array([x]), np.array([y]), np.array([weight])


@lru_cache(maxsize=_SHAPE_CACHE)
def _fill_mask(vx: tuple[int, ...], vy: tuple[int, ...]):
    """SDL_gfx's ``filledPolygon`` pixels of integer vertices, unclipped: ``(x0, y0, mask)``.

    Scanlines from the top to the bottom vertex; edge ``i`` runs from vertex ``i-1`` to
    ``i``, ordered top to bottom (flat edges drop out); a row crosses an edge on
    ``y1 <= y < y2`` (and the bottom row on ``y1 < y <= y2``) at a 16.16 fixed-point x with
    C's truncating division; crossings are sorted and paired, their ends rounded inwards.
    The mask is relative to ``(x0, y0)``, the top-left of the vertices' box; ``None``
    when nothing is filled.
    """
    vx_, vy_ = np.asarray(vx, dtype=np.int64), np.asarray(vy, dtype=np.int64)
    n = len(vx_)
    miny, maxy = int(vy_.min()), int(vy_.max())
    minx, maxx = int(vx_.min()), int(vx_.max())
    prev = np.arange(-1, n - 1)
    a_x, a_y = vx_[prev], vy_[prev]
    down = a_y < vy_
    sel = down | (a_y > vy_)
    ex1, ey1 = np.where(down, a_x, vx_)[sel], np.where(down, a_y, vy_)[sel]
    ex2, ey2 = np.where(down, vx_, a_x)[sel], np.where(down, vy_, a_y)[sel]
    rows = np.arange(miny, maxy + 1, dtype=np.int64)[:, None]
    hit = ((rows >= ey1) & (rows < ey2)) | ((rows == maxy) & (rows > ey1) & (rows <= ey2))
    cross = ((65536 * (rows - ey1)) // np.maximum(ey2 - ey1, 1)) * (ex2 - ex1) + 65536 * ex1
    cross = np.where(hit, cross, _NO_CROSSING)
    cross.sort(axis=1)
    count = hit.sum(axis=1)
    if len(count) == 0 or int(count.max()) < 2:
        return 0, 0, None
    # A span may reach one pixel past the vertices' box (rounding): give the mask room.
    x0 = minx - 1
    cols = np.arange(x0, maxx + 2, dtype=np.int64)
    mask = np.zeros((len(rows), len(cols)), dtype=bool)
    for i in range(0, int(count.max()) - 1, 2):
        xa = cross[:, i] + 1
        xa = (xa >> 16) + ((xa & 32768) >> 15)
        xb = cross[:, i + 1] - 1
        xb = (xb >> 16) + ((xb & 32768) >> 15)
        lo, hi = np.minimum(xa, xb), np.maximum(xa, xb)  # hlineColor swaps
        mask |= (count > i + 1)[:, None] & (cols >= lo[:, None]) & (cols <= hi[:, None])
    mask.flags.writeable = False
    return x0, miny, mask


def _line_ops(x1: int, y1: int, x2: int, y2: int) -> Ops:
    """SDL_gfx's ``_aalineColor`` without its end point, as ordered pixel operations.

    The coordinates are already clipped. Vertical and horizontal lines are stores; any
    other line stores its *first* point, then walks from its top end with a 32-bit error
    accumulator (``((minor << 16) // major) << 16`` per step): each step blends the pixel
    on the line at ``255 - w`` and its neighbour across at ``w``, the accumulator's top 8
    bits, leaving both end rows out.
    """
    xx0, yy0, xx1, yy1 = (x2, y2, x1, y1) if y1 > y2 else (x1, y1, x2, y2)
    dx, dy = xx1 - xx0, yy1 - yy0
    if dx == 0:
        if dy > 0:
            ys = np.arange(yy0, yy0 + dy + 1)
            return np.full(len(ys), x1), ys, np.full(len(ys), STORE)
        return _single(x1, y1)
    if dy == 0:
        xs = np.arange(min(xx0, xx0 + dx), max(xx0, xx0 + dx) + 1)
        return xs, np.full(len(xs), y1), np.full(len(xs), STORE)
    xdir = 1 if dx >= 0 else -1
    dx = abs(dx)
    major, minor = (dy, dx) if dy > dx else (dx, dy)
    k = np.arange(1, max(major, 1), dtype=np.int64)
    total = k * (((minor << 16) // major) << 16)
    carries = total >> 32
    weight = (total & 0xFFFFFFFF) >> 24
    if dy > dx:
        xs, ys = xx0 + xdir * carries, yy0 + k
        nx, ny = xs + xdir, ys
    else:
        xs, ys = xx0 + xdir * k, yy0 + carries
        nx, ny = xs, ys + 1
    return (
        np.concatenate([[x1], np.stack([xs, nx], axis=1).reshape(-1)]),
        np.concatenate([[y1], np.stack([ys, ny], axis=1).reshape(-1)]),
        np.concatenate([[STORE], np.stack([255 - weight, weight], axis=1).reshape(-1)]),
    )


_SEEN: set = set()


def _seen_before(key) -> bool:
    """Whether a shape was drawn before (then memoising it pays: shapes that recur, recur
    often; a shape seen once is drawn directly, which is cheaper than planning it)."""
    if key in _SEEN:
        return True
    if len(_SEEN) >= 4 * _SHAPE_CACHE:
        _SEEN.clear()
    _SEEN.add(key)
    return False


def _distinct(xs: np.ndarray, ys: np.ndarray, ws: np.ndarray) -> Ops:
    """Operations on distinct pixels (one line) as one layer, without the no-op blends."""
    alpha = _alpha(ws)
    keep = alpha != 0
    return xs[keep], ys[keep], alpha[keep][:, None]


@lru_cache(maxsize=64)
def _aa_circle_plan(radius: int, width: int) -> Plan:
    return _plan(_aa_circle_layers(radius), width)


def _over_fill(fill_x: np.ndarray, fill_y: np.ndarray, layers: list[Ops], width: int) -> Plan:
    """A plan that stores the fill, then applies the outline's operations off the fill.

    The outline has the fill's colour, and a blend (or store) of a colour onto that very
    colour leaves it unchanged, so outline operations on filled pixels can be dropped.
    """
    fill = (fill_y * width + fill_x).astype(np.int64)
    kept = []
    for xs, ys, alpha in layers:
        off = ~np.isin(ys * width + xs, fill)
        if off.any():
            kept.append((xs[off], ys[off], alpha[off]))
    return ((fill, None), *_plan(kept, width))


@lru_cache(maxsize=_SHAPE_CACHE)
def _polygon_plan(vx: tuple[int, ...], vy: tuple[int, ...], width: int) -> Plan:
    """Filled polygon and its outline (vertices relative to the first, no clipping)."""
    bx, by, mask = _fill_mask(vx, vy)
    fy, fx = np.nonzero(mask) if mask is not None else (np.zeros(0, int), np.zeros(0, int))
    n = len(vx)
    ops = [_line_ops(vx[i], vy[i], vx[(i + 1) % n], vy[(i + 1) % n]) for i in range(n)]
    layers = _layers(*(np.concatenate(part) for part in zip(*ops, strict=True)))
    return _over_fill(fx + bx, fy + by, layers, width)


@lru_cache(maxsize=64)
def _disc_plan(radius: int, width: int) -> Plan:
    """Filled circle and its anti-aliased outline around ``(0, 0)``."""
    fy, fx = np.nonzero(_filled_circle_mask(radius))
    return _over_fill(fx - radius, fy - radius, _aa_circle_layers(radius), width)


def _clip_line(x1: int, y1: int, x2: int, y2: int, right: int, bottom: int):
    """SDL_gfx's Cohen-Sutherland ``_clipLine`` (float32 slope, truncation toward zero)."""

    def code(x: int, y: int) -> int:
        c = 1 if x < 0 else (2 if x > right else 0)
        return c | (8 if y < 0 else (4 if y > bottom else 0))

    while True:
        c1, c2 = code(x1, y1), code(x2, y2)
        if not (c1 | c2):
            return x1, y1, x2, y2
        if c1 & c2:
            return None
        if not c1:
            x1, y1, x2, y2, c1, c2 = x2, y2, x1, y1, c2, c1
        m = np.float32(y2 - y1) / np.float32(x2 - x1) if x2 != x1 else np.float32(1.0)
        if c1 & 1:
            y1 += int(np.float32(0 - x1) * m)
            x1 = 0
        elif c1 & 2:
            y1 += int(np.float32(right - x1) * m)
            x1 = right
        elif c1 & 4:
            if x2 != x1:
                x1 += int(np.float32(bottom - y1) / m)
            y1 = bottom
        elif c1 & 8:
            if x2 != x1:
                x1 += int(np.float32(0 - y1) / m)
            y1 = 0


@lru_cache(maxsize=64)
def _filled_circle_mask(radius: int) -> np.ndarray:
    """The ``(2r+1, 2r+1)`` pixel mask SDL_gfx's ``filledCircle`` fills (midpoint spans)."""
    r = radius
    mask = np.zeros((2 * r + 1, 2 * r + 1), dtype=bool)

    def span(xa: int, xb: int, y: int) -> None:
        mask[y + r, min(xa, xb) + r : max(xa, xb) + r + 1] = True

    cx, cy, ocx, ocy = 0, r, -1, -1
    df, d_e, d_se = 1 - r, 3, -2 * r + 5
    while True:
        if ocy != cy:
            if cy > 0:
                span(-cx, cx, cy)
                span(-cx, cx, -cy)
            else:
                span(-cx, cx, 0)
            ocy = cy
        if ocx != cx:
            if cx != cy:
                if cx > 0:
                    span(-cy, cy, -cx)
                    span(-cy, cy, cx)
                else:
                    span(-cy, cy, 0)
            ocx = cx
        if df < 0:
            df += d_e
            d_e += 2
            d_se += 2
        else:
            df += d_se
            d_e += 2
            d_se += 4
            cy -= 1
        cx += 1
        if cx > cy:
            break
    mask.flags.writeable = False
    return mask


def _weight(num: int, den: int) -> int:
    """``(Uint8)(min(|num| / |den|, 1) * 255)`` in float32, as SDL_gfx computes it."""
    if den == 0:
        return 255
    cp = np.float32(abs(num)) / np.float32(abs(den))
    cp = min(cp, np.float32(1.0))
    return int(cp * np.float32(255))


@lru_cache(maxsize=64)
def _aa_circle_layers(radius: int) -> list[Ops]:
    """SDL_gfx's ``aaellipse`` (rx = ry = radius) around ``(0, 0)`` as layered operations:
    four full-colour stores, then the weighted blends of its two octant walks."""
    a2 = b2 = radius * radius
    ds, dt = 2 * a2, 2 * b2
    sab = math.sqrt(a2 + b2)
    dxt = round(a2 / sab)  # lrint: round half to even, as Python's round
    t, s, d = 0, -2 * a2 * radius, 0
    xp, yp = 0, -radius
    stores = [(xp, yp), (-xp, yp), (xp, -yp), (-xp, -yp)]
    ops: list[tuple[int, int, int]] = []
    for _ in range(dxt):
        xp -= 1
        d += t - b2
        if d >= 0:
            ys = yp - 1
        elif d - s - a2 > 0:
            if 2 * d - s - a2 >= 0:
                ys = yp + 1
            else:
                ys = yp
                yp += 1
                d -= s + a2
                s += ds
        else:
            yp += 1
            ys = yp + 1
            d -= s + a2
            s += ds
        t -= dt
        w = _weight(d, s)
        iw = 255 - w
        ops += [(xp, yp, iw), (-xp, yp, iw), (xp, ys, w), (-xp, ys, w),
                (xp, -yp, iw), (-xp, -yp, iw), (xp, -ys, w), (-xp, -ys, w)]
    dyt = round(b2 / sab)
    for _ in range(dyt):
        yp += 1
        d -= s + a2
        if d <= 0:
            xs = xp + 1
        elif d + t - b2 < 0:
            if 2 * d + t - b2 <= 0:
                xs = xp - 1
            else:
                xs = xp
                xp -= 1
                d += t - b2
                t -= dt
        else:
            xp -= 1
            xs = xp - 1
            d += t - b2
            t -= dt
        s += ds
        w = _weight(d, t)
        iw = 255 - w
        ops += [(xp, yp, iw), (-xp, yp, iw), (xp, -yp, iw), (-xp, -yp, iw),
                (xs, yp, w), (-xs, yp, w), (xs, -yp, w), (-xs, -yp, w)]
    # The four full-colour stores come first, then the blends in their order.
    xs = [p[0] for p in stores] + [o[0] for o in ops]
    ys = [p[1] for p in stores] + [o[1] for o in ops]
    ws = [STORE] * len(stores) + [o[2] for o in ops]
    return _layers(np.array(xs), np.array(ys), np.array(ws))


def _aalines(canvas: Canvas, points: list[tuple[float, float]], color: Color) -> None:
    """pygame-ce's ``draw.aalines(surface, color, False, points)``, in float32 like its C.

    A scalar port (each pixel depends on the float32 running sum along its line): slow, so
    it is only used for what a frame shares with every other frame (MountainCar's hill,
    drawn once per frame size by :meth:`Canvas.static`). Joints between a steep and a flat
    segment get an extra end pixel; end points are drawn only at integral coordinates.
    """
    f32 = np.float32
    xs = [f32(x) for x, _ in points]
    ys = [f32(y) for _, y in points]
    n = len(xs)
    if n < 2:
        raise ValueError("aalines needs 2 or more points")

    def integral(x, y) -> bool:
        return bool(np.round(x) == x and np.round(y) == y)

    def steep(x0, y0, x1, y1) -> bool:
        return bool(abs(x1 - x0) < abs(y1 - y0))

    prev = (xs[0], ys[0], xs[1], ys[1])
    # (pygame-ce compares the first segment's end with the *third* point's x and y.)
    third = (xs[2], ys[2]) if n > 2 else (xs[1], ys[1])
    extra = steep(*prev) > bool(abs(third[0] - xs[1]) < abs(third[1] - ys[0]))
    disable = not integral(xs[1], ys[1])
    _aaline(canvas, color, xs[0], ys[0], xs[1], ys[1], False, disable, extra)
    for i in range(2, n - 1):
        cur = (xs[i - 1], ys[i - 1], xs[i], ys[i])
        extra = steep(*prev) != steep(*cur)
        disable = not integral(xs[i], ys[i])
        prev = cur
        _aaline(canvas, color, *cur, disable, disable, extra)
    if n > 2:
        cur = (xs[n - 2], ys[n - 2], xs[n - 1], ys[n - 1])
        extra = steep(*prev) != steep(*cur)
        disable = not integral(xs[n - 1], ys[n - 1])
        _aaline(canvas, color, *cur, disable, False, extra)


def _clip_rows(low_x, low_y, high_x, high_y, gradient, clip_top, clip_bottom):
    """A segment cut to the rows ``(clip_top, clip_bottom)``, its ``low`` end the one of
    smaller y, in float32 as pygame-ce does; ``None`` when it lies wholly outside."""
    f32 = np.float32
    if high_y <= clip_top or low_y >= clip_bottom:
        return None
    if low_y < clip_top:
        low_x = f32(low_x + (clip_top - low_y) / gradient)
        low_y = clip_top
    if high_y > clip_bottom:
        high_x = f32(high_x + (clip_bottom - high_y) / gradient)
        high_y = clip_bottom
    return low_x, low_y, high_x, high_y


def _aaline(canvas: Canvas, color: Color, from_x, from_y, to_x, to_y,
            disable_first: bool, disable_second: bool, extra: bool) -> None:
    """pygame-ce's ``draw_aaline`` (Xiaolin Wu, float32), one segment."""
    f32 = np.float32
    width, height = canvas.width, canvas.height
    pixels = canvas.pixels

    def put(x: int, y: int, brightness) -> None:
        if 0 <= x < width and 0 <= y < height:
            old = pixels[y, x]
            b = f32(brightness)
            pixels[y, x] = [
                int(b * f32(c) + (f32(1) - b) * f32(int(o))) for c, o in zip(color, old, strict=True)
            ]

    dx, dy = f32(to_x - from_x), f32(to_y - from_y)
    if abs(dx) < 0.0001 and abs(dy) < 0.0001:
        put(math.floor(from_x + f32(0.5)), math.floor(from_y + f32(0.5)), 1)
        return
    clip_left, clip_top = f32(-1), f32(-1)
    clip_right, clip_bottom = f32(width), f32(height)
    is_steep = bool(abs(dx) < abs(dy))
    if is_steep:
        from_x, from_y, to_x, to_y = from_y, from_x, to_y, to_x
        dx, dy = dy, dx
        clip_left, clip_top, clip_right, clip_bottom = clip_top, clip_left, clip_bottom, clip_right
    if dx < 0:
        from_x, to_x, from_y, to_y = to_x, from_x, to_y, from_y
        dx, dy = -dx, -dy
    if to_x <= clip_left or from_x >= clip_right:
        return
    gradient = f32(dy / dx)
    if from_x < clip_left:
        from_y = f32(from_y + gradient * (clip_left - from_x))
        from_x = clip_left
    if to_x > clip_right:
        to_y = f32(to_y + gradient * (clip_right - to_x))
        to_x = clip_right
    if gradient > 0:
        clipped = _clip_rows(from_x, from_y, to_x, to_y, gradient, clip_top, clip_bottom)
        if clipped is None:
            return
        from_x, from_y, to_x, to_y = clipped
    else:
        clipped = _clip_rows(to_x, to_y, from_x, from_y, gradient, clip_top, clip_bottom)
        if clipped is None:
            return
        to_x, to_y, from_x, from_y = clipped
    from_y = f32(from_y + f32(1))
    to_y = f32(to_y + f32(1))

    def endpoint(x_pixel: int, y_end, x_gap) -> None:
        brightness = f32(y_end - f32(int(y_end)))
        x, y = (int(y_end), x_pixel) if is_steep else (x_pixel, int(y_end))
        if int(y_end) < y_end:
            put(x, y, f32(brightness * x_gap))
        if is_steep:
            x -= 1
        else:
            y -= 1
        put(x, y, f32(f32(1) - brightness) * x_gap)

    x_start = 0
    intersect_y = f32(0)
    if not disable_first or extra:
        x_start = int(from_x)
        intersect_y = y_end = f32(from_y + gradient * f32(x_start - from_x))
        if to_x > clip_left + f32(1):
            endpoint(x_start, y_end, f32(f32(1) + f32(x_start) - from_x))
            intersect_y = f32(intersect_y + gradient)
            x_start += 1
    if disable_first:
        x_start = math.ceil(from_x)
        intersect_y = f32(from_y + gradient * f32(x_start - from_x))
    x_end = math.ceil(to_x)
    if (not disable_second or extra) and from_x < clip_right - f32(1):
        y_end = f32(to_y + gradient * f32(x_end - to_x))
        endpoint(x_end, y_end, f32(f32(1) - f32(x_end) + to_x))
    for x in range(x_start, x_end):
        y = int(intersect_y)
        brightness = f32(f32(1) - intersect_y + f32(y))
        if is_steep:
            put(y - 1, x, brightness)
            if y < intersect_y:
                put(y, x, f32(1) - brightness)
        else:
            put(x, y - 1, brightness)
            if y < intersect_y:
                put(x, y, f32(1) - brightness)
        intersect_y = f32(intersect_y + gradient)
