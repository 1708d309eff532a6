"""The `stripes` dataset: 8x8 images of a stripe pattern in one of four orientations, plus noise.

Generated, not downloaded: 800 images from a fixed generator (so every machine sees the same
data), split train / validation / test by the search's split seed.
"""

from __future__ import annotations

import numpy as np

from nas.data import Dataset, from_arrays


def load_stripes(spec: str, seed: int) -> Dataset:
    """Four classes: horizontal, vertical and the two diagonal stripe patterns, with noise."""
    rng = np.random.default_rng(1234)
    n, side = 800, 8
    i, j = np.mgrid[0:side, 0:side]
    patterns = [(i % 2), (j % 2), ((i + j) % 2), ((i - j) % 4 < 2)]
    y = rng.integers(0, 4, n)
    x = np.stack([patterns[c].astype(np.float32) for c in y]) * 0.6 + rng.random((n, side, side)) * 0.4
    return from_arrays(spec, x, y, seed)
