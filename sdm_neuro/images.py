"""Image output: PNG sample grids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .fileio import write_atomic


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[N, C, H, W]`` in [-1, 1] -> ``[N, H, W, C]`` uint8."""
    arr = torch.as_tensor(images).detach().float().clamp(-1, 1).cpu().numpy()
    return np.round((arr + 1) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)


def grid_image(images: torch.Tensor | np.ndarray, *, nrow: int | None = None, pad: int = 2,
               min_tile: int = 64) -> Image.Image:
    """Tile images in [-1, 1] into one picture; small images are enlarged (nearest) to at least
    ``min_tile`` pixels so that 8x8 or 16x16 samples stay visible."""
    tiles = to_uint8(images)
    n, h, w, c = tiles.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    ncol = math.ceil(n / nrow)
    scale = max(1, math.ceil(min_tile / max(h, w)))
    th, tw = h * scale, w * scale
    canvas = np.full((ncol * (th + pad) + pad, nrow * (tw + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        tile = tiles[i].repeat(scale, axis=0).repeat(scale, axis=1)
        y, x = pad + r * (th + pad), pad + q * (tw + pad)
        canvas[y:y + th, x:x + tw] = tile
    return Image.fromarray(canvas[..., 0] if c == 1 else canvas)


def save_grid(images: torch.Tensor | np.ndarray, path: str | Path, **kw) -> Path:
    img = grid_image(images, **kw)
    return write_atomic(path, lambda tmp: img.save(tmp, format="PNG"))
