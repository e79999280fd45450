"""Real data sets: scikit-learn's digits, MNIST-format files (IDX, gzipped or not,
and Keras-style .npz), Fashion-MNIST from Debian's package, inputs with a channel
axis, and ``--data mnist:PATH`` in the command."""

import gzip
import json
import re
import sys

import jax
import numpy as np
import pytest

import jaxprop as jp
from jaxprop._cli import main
from jaxprop._experiment import absolute_paths, make_config, read_toml
from jaxprop.data import _files
from tests.helpers import IDX_STEMS as STEMS
from tests.helpers import write_idx


def tiny_mnist(n=12, n_test=5, rows=28, cols=28, n_classes=3, seed=0):
    """Random uint8 images (every value 0..255 somewhere) and labels."""
    rng = np.random.default_rng(seed)
    arrays = {
        "x": rng.integers(0, 256, (n, rows, cols), dtype=np.uint8),
        "y": np.arange(n, dtype=np.uint8) % n_classes,
        "x_test": rng.integers(0, 256, (n_test, rows, cols), dtype=np.uint8),
        "y_test": np.arange(n_test, dtype=np.uint8) % n_classes,
    }
    arrays["x"].reshape(-1)[:256] = np.arange(256)
    return arrays


def assert_matches(d, arrays):
    """``d`` is ``arrays`` flattened and scaled to [0, 1] exactly, in float32."""
    for field in ("x", "x_test"):
        raw = arrays[field]
        expected = raw.reshape(len(raw), -1).astype(np.float32) / np.float32(255)
        got = getattr(d, field)
        assert got.dtype == np.float32 and got.shape == (len(raw), 784)
        np.testing.assert_array_equal(got, expected)
    for field in ("y", "y_test"):
        got = getattr(d, field)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, arrays[field])


# ------------------------------------------------------------------ files
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("dotted", [False, True], ids=["dash", "dot"])
def test_load_mnist_reads_idx_files_exactly(tmp_path, gz, dotted):
    arrays = tiny_mnist()
    write_idx(tmp_path, arrays, gz=gz, dotted=dotted)
    d = jp.data.load_mnist(tmp_path)
    assert isinstance(d, jp.data.Dataset)
    assert_matches(d, arrays)
    assert d.x.min() == 0 and d.x.max() == 1
    assert_matches(jp.data.load_fashion_mnist(str(tmp_path)), arrays)


def test_load_mnist_reads_a_keras_npz_and_float64(tmp_path):
    arrays = tiny_mnist(seed=1)
    path = tmp_path / "mnist.npz"
    np.savez(path, **{f"{k}_train" if k in "xy" else k: a for k, a in arrays.items()})
    assert_matches(jp.data.load_mnist(path), arrays)
    d = jp.data.load_mnist(path, dtype="float64")
    assert d.x.dtype == np.float64
    np.testing.assert_array_equal(d.x_test * 255, arrays["x_test"].reshape(5, -1))


def test_load_mnist_mixed_gz_and_other_image_sizes(tmp_path):
    arrays = tiny_mnist(rows=8, cols=8)
    paths = write_idx(tmp_path, arrays, gz=True)
    plain = gzip.decompress(paths["y"].read_bytes())
    paths["y"].unlink()  # one file plain, the others gzipped
    (tmp_path / STEMS["y"]).write_bytes(plain)
    d = jp.data.load_mnist(tmp_path)
    assert d.x.shape == (12, 64) and d.x_test.shape == (5, 64)
    np.testing.assert_array_equal(d.y, arrays["y"])


def test_load_mnist_channels_last_keeps_each_image(tmp_path):
    arrays = tiny_mnist(rows=8, cols=6)
    write_idx(tmp_path, arrays, gz=True)
    np.savez(
        tmp_path / "m.npz",
        **{f"{k}_train" if k in "xy" else k: a for k, a in arrays.items()},
    )
    for path in (tmp_path, tmp_path / "m.npz"):
        flat = jp.data.load_mnist(path)
        for load in (jp.data.load_mnist, jp.data.load_fashion_mnist):
            d = load(path, channels_last=True)
            assert d.x.shape == (12, 8, 6, 1) and d.x_test.shape == (5, 8, 6, 1)
            assert d.x.dtype == np.float32
            np.testing.assert_array_equal(d.x.reshape(12, -1), flat.x)
            np.testing.assert_array_equal(d.x_test.reshape(5, -1), flat.x_test)
            np.testing.assert_array_equal(d.x[..., 0] * 255, arrays["x"])
            np.testing.assert_array_equal(d.y_test, flat.y_test)
    d = jp.data.load_mnist(tmp_path, channels_last=True, dtype="float64")
    assert d.x.dtype == np.float64 and d.x.shape == (12, 8, 6, 1)
    with pytest.raises(
        TypeError, match=r"channels_last must be one of \[False, True\]"
    ):
        jp.data.load_fashion_mnist(tmp_path, channels_last=None)


def corrupt(paths, field, how):
    path = paths[field]
    raw = path.read_bytes()
    if how == "magic":
        path.write_bytes(b"\x12\x34" + raw[2:])
    elif how == "type":
        path.write_bytes(raw[:2] + b"\x0d" + raw[3:])
    elif how == "ndim":
        path.write_bytes(raw[:3] + b"\x01" + raw[4:])
    elif how == "truncated":
        path.write_bytes(raw[:-2])
    elif how == "header":
        path.write_bytes(raw[:6])
    elif how == "trailing":
        path.write_bytes(raw + b"\0")
    elif how == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    "field, how, message",
    [
        ("x", "magic", r"not an IDX file: its magic number is 0x12340803"),
        ("y", "type", r"IDX type code 0x0d; MNIST's files hold unsigned bytes"),
        ("x_test", "ndim", r"1 dimension\(s\) \(a label file\?\); MNIST's images"),
        ("y_test", "truncated", r"truncated: its header promises labels of shape"),
        ("x", "truncated", r"truncated: .* shape \(12, 28, 28\), 9408 bytes"),
        ("x", "header", r"truncated: 6 bytes, shorter than the 16-byte header"),
        ("y", "trailing", r"header promises labels of shape \(12,\), 12 bytes of "),
        ("x_test", "empty", r"not an IDX file: 0 bytes, shorter than the 4-byte"),
    ],
)
def test_bad_idx_files_raise_naming_the_file(tmp_path, field, how, message):
    paths = write_idx(tmp_path, tiny_mnist())
    path = corrupt(paths, field, how)
    with pytest.raises(ValueError, match=message) as e:
        jp.data.load_mnist(tmp_path)
    assert str(e.value).startswith(f"{path}: ")


def test_bad_gzip_and_mismatched_files_raise_naming_the_file(tmp_path):
    paths = write_idx(tmp_path, tiny_mnist(), gz=True)
    paths["x"].write_bytes(paths["x"].read_bytes()[:40])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: a damaged gzip"):
        jp.data.load_mnist(tmp_path)

    arrays = tiny_mnist()
    arrays["y_test"] = arrays["y_test"][:4]
    paths = write_idx(tmp_path / "count", arrays)
    with pytest.raises(ValueError, match=r"4 labels for the 5 images of") as e:
        jp.data.load_mnist(tmp_path / "count")
    assert str(e.value).startswith(f"{paths['y_test']}: ")

    arrays = tiny_mnist()
    arrays["x_test"] = arrays["x_test"][:, :27]
    write_idx(tmp_path / "size", arrays)
    with pytest.raises(ValueError, match=r"images of \(27, 28\) pixels; the training"):
        jp.data.load_mnist(tmp_path / "size")

    arrays = tiny_mnist()
    arrays["y_test"][2] = 200
    write_idx(tmp_path / "labels", arrays)
    with pytest.raises(ValueError, match=r"test labels from 0 to 200; Fashion-MNIST"):
        jp.data.load_fashion_mnist(tmp_path / "labels")
    arrays["y_test"][2] = 9  # the largest class id there is
    write_idx(tmp_path / "labels", arrays)
    assert jp.data.load_fashion_mnist(tmp_path / "labels").y_test.max() == 9


def test_missing_files_list_what_was_looked_for(tmp_path):
    paths = write_idx(tmp_path, tiny_mnist())
    paths["y"].unlink()
    paths["x_test"].unlink()
    with pytest.raises(ValueError) as e:
        jp.data.load_fashion_mnist(tmp_path)
    message = str(e.value)
    assert "lacks 2 of Fashion-MNIST's four IDX files" in message
    for name in (
        "train-labels-idx1-ubyte",
        "train-labels-idx1-ubyte.gz",
        "train-labels.idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
    ):
        assert name in message
    assert "t10k-labels" not in message  # found
    with pytest.raises(ValueError, match=r"no such folder or file.*MNIST's four"):
        jp.data.load_mnist(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"folder .* holds Fashion-MNIST's four"):
        jp.data.load_fashion_mnist(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"is a file but not a \.npz"):
        jp.data.load_mnist(paths["x"])
    with pytest.raises(TypeError, match=r"path must be a folder or a \.npz"):
        jp.data.load_mnist(3)
    with pytest.raises(TypeError, match=r"dtype must be a floating dtype"):
        jp.data.load_mnist(tmp_path, dtype=np.int32)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"x_test": None}, r"no arrays named \['x_test'\]"),
        ({"x_train": np.zeros((3, 4, 4))}, r"x_train must hold integers .* float64"),
        ({"y_train": np.zeros((3, 1), np.uint8)}, r"y_train must be \(n,\) labels"),
        ({"x_train": np.full((3, 4, 4), 256)}, r"x_train holds values in \[256, 256\]"),
        ({"y_test": np.zeros(1, np.uint8)}, r"1 labels in y_test for the 2 images"),
    ],
)
def test_bad_npz_raises_naming_the_file(tmp_path, change, message):
    arrays = {
        "x_train": np.zeros((3, 4, 4), np.uint8),
        "y_train": np.zeros(3, np.uint8),
        "x_test": np.zeros((2, 4, 4), np.uint8),
        "y_test": np.zeros(2, np.uint8),
    }
    arrays.update(change)
    path = tmp_path / "mnist.npz"
    np.savez(path, **{k: a for k, a in arrays.items() if a is not None})
    with pytest.raises(ValueError, match=message) as e:
        jp.data.load_mnist(path)
    assert str(e.value).startswith(f"{path}: ")


# ----------------------------------------------------------------- digits
def test_digits_split_is_fixed_balanced_and_a_partition():
    sklearn = pytest.importorskip("sklearn.datasets")
    d = jp.data.digits()
    arrays = jax.tree.leaves(d)  # x, y, x_test, y_test
    assert [a.shape for a in arrays] == [(1437, 64), (1437,), (360, 64), (360,)]
    assert [a.dtype for a in arrays] == [np.float32, np.int32, np.float32, np.int32]
    assert d.x.min() == 0 and d.x.max() == 1 and d.x_test.max() == 1
    for y in (d.y, d.y_test):
        counts = np.bincount(y, minlength=10)
        assert len(counts) == 10 and counts.min() >= 0.9 * counts.mean()
    # The split: train then test is the file's order, so they are disjoint.
    bunch = sklearn.load_digits()
    np.testing.assert_array_equal(np.r_[d.x, d.x_test] * 16, bunch.data)
    np.testing.assert_array_equal(np.r_[d.y, d.y_test], bunch.target)
    again = jp.data.digits()
    for a, b in zip(arrays, jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)


def test_digits_options_and_missing_scikit_learn(monkeypatch, key):
    pytest.importorskip("sklearn.datasets")
    d = jp.data.digits(100, key=key, dtype=np.float64)
    assert d.x.shape == (1697, 64) and d.x_test.shape == (100, 64)
    assert d.x.dtype == np.float64
    rows = {r.tobytes() for r in np.r_[d.x, d.x_test]}
    assert rows == {r.tobytes() for r in jp.data.digits(dtype="float64").x} | {
        r.tobytes() for r in jp.data.digits(dtype="float64").x_test
    }
    with pytest.raises(ValueError, match=r"n_test must be an integer in \[1, 1796\]"):
        jp.data.digits(0)
    with pytest.raises(TypeError, match=r"dtype must be a floating dtype"):
        jp.data.digits(dtype="int8")
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(
        ImportError, match=r"pip install scikit-learn, or pip install -e '\.\[digits\]'"
    ):
        jp.data.digits()


def test_digits_channels_last_are_the_8x8_images():
    sklearn = pytest.importorskip("sklearn.datasets")
    flat = jp.data.digits()
    d = jp.data.digits(channels_last=True)
    assert [a.shape for a in d] == [(1437, 8, 8, 1), (1437,), (360, 8, 8, 1), (360,)]
    np.testing.assert_array_equal(d.x.reshape(1437, -1), flat.x)
    np.testing.assert_array_equal(d.x_test.reshape(360, -1), flat.x_test)
    np.testing.assert_array_equal(d.y, flat.y)
    images = sklearn.load_digits().images
    np.testing.assert_array_equal(d.x_test[..., 0] * 16, images[1437:])
    with pytest.raises(TypeError, match=r"channels_last must be one of"):
        jp.data.digits(channels_last=np.bool_(True))


# ---------------------------------------------------- Debian's Fashion-MNIST
@pytest.mark.skipif(
    not _files.FASHION_MNIST_DIR.is_dir(),
    reason=f"Fashion-MNIST's files are not in {_files.FASHION_MNIST_DIR}: "
    "apt-get install dataset-fashion-mnist (Debian, Ubuntu)",
)
def test_fashion_mnist_reads_the_debian_package_files():
    d = jp.data.fashion_mnist()
    assert [a.shape for a in d] == [(60000, 784), (60000,), (10000, 784), (10000,)]
    assert [a.dtype for a in d] == [np.float32, np.int32, np.float32, np.int32]
    for x in (d.x, d.x_test):
        assert x.min() == 0 and x.max() == 1
    # Zalando's split is balanced: 6000 and 1000 images of each of the 10 classes.
    np.testing.assert_array_equal(np.bincount(d.y), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(d.y_test), [1000] * 10)
    # Pixels k/255 exactly, as load_fashion_mnist scales them.
    np.testing.assert_array_equal(np.round(d.x_test[:50] * 255) / 255, d.x_test[:50])
    cl = jp.data.fashion_mnist(channels_last=True)
    assert cl.x.shape == (60000, 28, 28, 1) and cl.x_test.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(cl.x.reshape(60000, -1), d.x)
    np.testing.assert_array_equal(cl.x_test.reshape(10000, -1), d.x_test)
    np.testing.assert_array_equal(cl.y_test, d.y_test)


def test_fashion_mnist_says_how_to_get_the_files(tmp_path, monkeypatch):
    absent = tmp_path / "absent"
    monkeypatch.setattr(_files, "FASHION_MNIST_DIR", absent)
    with pytest.raises(FileNotFoundError) as e:
        jp.data.fashion_mnist()
    message = str(e.value)
    assert f"no folder {str(absent)!r}" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "pass path= a folder of the four IDX files" in message
    assert "train-images-idx3-ubyte" in message
    # path= another folder of the files; an absent one is the loader's error.
    arrays = tiny_mnist(seed=2)
    write_idx(tmp_path / "f", arrays, gz=True)
    d = jp.data.fashion_mnist(True, path=tmp_path / "f", dtype=np.float64)
    assert d.x.shape == (12, 28, 28, 1) and d.x.dtype == np.float64
    np.testing.assert_array_equal(d.x[..., 0] * 255, arrays["x"])
    with pytest.raises(ValueError, match=r"no such folder or file .*Fashion-MNIST"):
        jp.data.fashion_mnist(path=tmp_path / "nowhere")
    with pytest.raises(TypeError, match=r"channels_last must be one of"):
        jp.data.fashion_mnist("yes")


# ---------------------------------------------------------------- command
def test_train_on_mnist_files(tmp_path, capsys):
    arrays = tiny_mnist(n=40, n_test=12)
    write_idx(tmp_path / "mnist", arrays, gz=True)
    code = main([
        "train", "--data", f"fashion_mnist:{tmp_path / 'mnist'}", "--steps", "20",
        "--lr", "0.5", "--batch-size", "10", "--quiet",
    ])  # fmt: skip
    assert code == 0
    stdout, stderr = capsys.readouterr()
    assert "784-8-3" in stderr and "trained 1 runs × 20 steps" in stdout
    assert re.search(r"eval accuracy [\d.]+ \(one run\)", stdout)  # 12 test images


@pytest.mark.slow  # the same run with --out: gradient check and plots, ~3 s more
def test_train_on_mnist_files_writes_metrics(tmp_path, capsys):
    write_idx(tmp_path / "mnist", tiny_mnist(n=40, n_test=12))
    out = tmp_path / "run"
    code = main([
        "train", "--data", f"mnist:{tmp_path / 'mnist'}", "--steps", "20",
        "--lr", "0.5", "--batch-size", "10", "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert code == 0
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["data"] == f"mnist:{(tmp_path / 'mnist').resolve()}"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["headline"] == "eval_accuracy"
    (run,) = metrics["runs"]
    assert 0 <= run["eval_accuracy"] <= 1
    with np.load(out / "curves.npz") as curves:
        assert np.all(np.isfinite(curves["losses"]))
        assert curves["eval_accuracy"].shape[:2] == (1, 1)


def test_data_settings_for_real_data_sets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = absolute_paths(make_config({"data": "fashion_mnist:data/f.npz"}))
    assert config.data == f"fashion_mnist:{tmp_path / 'data' / 'f.npz'}"
    toml = tmp_path / "exp" / "run.toml"
    toml.parent.mkdir()
    toml.write_text('data = "mnist:files"\n')  # relative to the file's folder
    assert read_toml(toml)["data"] == f"mnist:{tmp_path / 'exp' / 'files'}"
    assert make_config({"data": "digits"}).data == "digits"
    for data, message in [
        ("mnist", r"data: mnist needs the path of its files: mnist:PATH"),
        ("fashion_mnist:", r"data: fashion_mnist needs the path of its files"),
        ("mnist1d:x", r"data: unknown dataset 'mnist1d:x'"),
    ]:
        with pytest.raises(ValueError, match=message):
            make_config({"data": data})
    own_split = r"eval_data applies to file data \(.*mnist and fashion_mnist bring"
    with pytest.raises(ValueError, match=own_split):
        make_config({"data": "mnist:d", "eval_data": "test.npz"})
    with pytest.raises(ValueError, match=r"n_test applies to moons"):
        make_config({"data": "digits", "n_test": 10})
