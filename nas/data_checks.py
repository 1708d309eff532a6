"""Checks of a dataset's arrays before any training: an `npz:` file's headers and contents.

Each failure is one `ConfigError` naming the file and the array (`nas.data` loads the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ConfigError

NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
MAX_NPZ_BYTES = 4 << 30  # uncompressed bytes of the four arrays together (a zip bomb stops here)
MAX_CLASSES = 10_000  # class labels are 0..C-1; a label of 10**9 is a typo, not a 10**9-way classifier


def npz_headers(f: Any, path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each array, read from the .npy headers without decompressing the data."""
    out = {}
    for k in NPZ_ARRAYS:
        with f.zip.open(f"{k}.npy") as member:
            version = np.lib.format.read_magic(member)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = reader(member)
        out[k] = (tuple(shape), dtype)
    total = sum(int(np.prod(shape, dtype=object)) * dtype.itemsize for shape, dtype in out.values())
    if total > MAX_NPZ_BYTES:
        raise ConfigError(f"{shown_path(path)}: arrays hold {total:,} bytes uncompressed (limit {MAX_NPZ_BYTES:,})")
    return out


def shown_path(path: Path) -> str:
    """`path` as text, with unprintable characters (a newline in a name) escaped, for one-line errors."""
    text = str(path)
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def check_arrays(arrays: dict[str, np.ndarray], file: str) -> None:
    """Validate the arrays of an npz dataset; raise ConfigError naming `file` and the array.

    x_train/x_test: real numbers (bool, integer or floating; no strings, objects or complex),
    one sample per row with at least one feature dimension (N, F), (N, H, W) or (N, C, H, W)
    (NHWC accepted), at least one sample each, equal per-sample shapes, all finite.
    y_train/y_test: 1-D integer labels in [0, MAX_CLASSES), as many as samples, every test
    class also present in training.
    """

    def bad(k: str, what: str) -> ConfigError:
        """The one-line error for array `k`."""
        return ConfigError(f"{file}: array '{k}': {what}")

    for k in ("x_train", "x_test"):
        x = arrays[k]
        if x.dtype.kind not in "biuf":
            raise bad(k, f"expected real numbers (integer or float), got dtype {x.dtype}")
        if x.ndim < 2 or x.ndim > 4:
            raise bad(
                k, f"expected samples along the first axis: (N, F), (N, H, W) or (N, C, H, W); got shape {x.shape}"
            )
        if len(x) == 0:
            raise bad(k, f"has no samples (shape {x.shape})")
        if 0 in x.shape[1:]:
            raise bad(k, f"samples are empty (shape {x.shape})")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            n = int(np.size(x) - np.isfinite(x).sum())
            raise bad(k, f"holds {n} NaN or infinite value(s)")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise bad(
            "x_test",
            f"samples of shape {arrays['x_test'].shape[1:]} differ from x_train's {arrays['x_train'].shape[1:]}",
        )
    for k in ("y_train", "y_test"):
        y = arrays[k]
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise bad(k, f"expected 1-D integer class labels, got dtype {y.dtype} and shape {y.shape}")
        if len(y) and (y.min() < 0 or y.max() >= MAX_CLASSES):
            raise bad(k, f"expected labels in [0, {MAX_CLASSES}), got {y.min()}..{y.max()}")
    for xk, yk in (("x_train", "y_train"), ("x_test", "y_test")):
        if len(arrays[xk]) != len(arrays[yk]):
            raise bad(yk, f"{len(arrays[yk])} labels for {len(arrays[xk])} samples in '{xk}'")
    unseen = sorted(set(np.unique(arrays["y_test"]).tolist()) - set(np.unique(arrays["y_train"]).tolist()))
    if unseen:
        shown = ", ".join(map(str, unseen[:5])) + (", ..." if len(unseen) > 5 else "")
        raise bad("y_test", f"class(es) {shown} never occur in y_train, so no candidate can learn them")
