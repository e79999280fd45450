"""Damaged and foreign files: every reader of a checksummed or structured file
(``jp.load``, ``load_run``, ``--resume``, the data loaders) names the file and
what is wrong in one line.

The readers' tests are quick (no compilation); those that need a finished run
(``jaxprop train`` in processes) are behind the ``faults`` marker.
"""

import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import jaxprop as jp
from jaxprop import _io
from jaxprop._cli import main
from tests.helpers import DAMAGES, damage

ROOT = Path(__file__).resolve().parents[1]
#: The message of each way :func:`damage` damages a zip archive.
DAMAGED = {
    "truncate": r"the file is damaged \(truncated, or its end overwritten",
    "zero": r"the file is damaged \(Bad CRC-32 for file '\w+\.npy'\)",
    "flip": r"the file is damaged \(Bad CRC-32 for file '\w+\.npy'\)",
}


def one_line(message: str, path) -> str:
    """``message``, checked to be one line that starts with ``path``."""
    assert "\n" not in message.strip(), message
    assert message.startswith(f"{path}: "), message
    return message


# ------------------------------------------------------------------- readers
@pytest.mark.parametrize("how", DAMAGES)
def test_jp_load_names_a_damaged_file(tmp_path, how, seed):
    rng = np.random.default_rng(seed)
    tree = {"w": rng.normal(size=(48, 48)), "b": [rng.normal(size=48), 3]}
    path = jp.save(tmp_path / "tree.npz", tree)
    damage(path, how, seed)
    with pytest.raises(ValueError, match=DAMAGED[how]) as e:
        jp.load(path, like=tree)
    one_line(str(e.value), path)


def test_saved_meta_names_a_damaged_header(tmp_path, seed):
    """The header is read alone (Trainer.load's settings) and checked alone."""
    path = jp.save(tmp_path / "tree.npz", {"a": np.zeros(3)}, meta={"note": "x" * 400})
    assert _io.saved_meta(path) == {"note": "x" * 400}
    damage(path, "flip", seed, member="__jaxprop__")
    with pytest.raises(ValueError, match=r"damaged \(Bad CRC-32 .*'__jaxprop__\.npy'"):
        _io.saved_meta(path)
    jp.save(path, {"a": np.zeros(3000)})
    damage(path, "truncate", seed)
    with pytest.raises(ValueError, match=DAMAGED["truncate"]) as e:
        _io.saved_meta(path)
    one_line(str(e.value), path)


def test_a_foreign_header_is_not_a_jp_save_file(tmp_path):
    path = tmp_path / "other.npz"
    unsure = (
        r"its jaxprop header cannot be read \(damaged, or not written by jp\.save\)"
    )
    np.savez(path, __jaxprop__=np.frombuffer(b"\xff\xfe{", np.uint8))
    with pytest.raises(ValueError, match=unsure) as e:
        jp.load(path)
    one_line(str(e.value), path)
    np.savez(path, __jaxprop__=np.frombuffer(b"[1, 2]", np.uint8))
    with pytest.raises(ValueError, match=unsure):
        jp.load(path)
    later = b'{"format": "jaxprop.pytree", "version": 2, "leaves": []}'
    np.savez(path, __jaxprop__=np.frombuffer(later, np.uint8))
    with pytest.raises(ValueError, match=r"written in version 2 of jp\.save's format"):
        jp.load(path)


@pytest.mark.parametrize("field", ["method", "encrypted"])
def test_a_damaged_table_of_contents_is_named(tmp_path, field):
    """Bytes of the zip's central directory that make zipfile raise
    NotImplementedError (a compression method it does not know) or
    RuntimeError (a member flagged encrypted) are damage."""
    path = jp.save(tmp_path / "tree.npz", {"w": np.arange(6.0), "b": np.ones(2)})
    data = bytearray(path.read_bytes())
    entry = data.rindex(b"PK\x01\x02")  # the last member's directory entry
    if field == "method":
        data[entry + 10 : entry + 12] = (99).to_bytes(2, "little")
    else:
        data[entry + 8] |= 1  # general purpose flag bit 0: encrypted
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"the file is damaged") as e:
        jp.load(path)
    one_line(str(e.value), path)


def test_a_missing_member_is_named(tmp_path):
    """Member names are not under the zip's checksums: a renamed member is a
    ValueError naming the file and what it holds (it was a KeyError)."""
    from jaxprop._io import npz_array, open_npz

    path = tmp_path / "data.npz"
    np.savez(path, x=np.ones(3), z_test=np.zeros(2))
    with open_npz(path) as f, pytest.raises(ValueError) as e:
        npz_array(f, "y_test", path)
    assert "no array named 'y_test' (damaged, or another file)" in str(e.value)
    one_line(str(e.value), path)


@pytest.mark.parametrize("how", DAMAGES)
def test_load_npz_names_a_damaged_file(tmp_path, how, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(1000, 3)), rng.integers(0, 2, 1000)
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=y)
    damage(path, how, seed)
    with pytest.raises(ValueError, match=DAMAGED[how]) as e:
        jp.data.load_npz(path)
    one_line(str(e.value), path)


def test_load_npz_names_an_array_numpy_refuses(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([{}], dtype=object), y=np.zeros(1))
    with pytest.raises(ValueError, match=r"array 'x' cannot be read \(Object arr") as e:
        jp.data.load_npz(path)
    one_line(str(e.value), path)


@pytest.mark.parametrize("how", DAMAGES)
def test_load_mnist_names_a_damaged_npz(tmp_path, how, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "mnist.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        y_train=np.arange(12, dtype=np.uint8) % 10,
        x_test=rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        y_test=np.arange(5, dtype=np.uint8),
    )
    damage(path, how, seed)
    with pytest.raises(ValueError, match=DAMAGED[how]) as e:
        jp.data.load_mnist(path)
    one_line(str(e.value), path)


def test_load_csv_names_a_file_that_is_not_text(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"0.5,1,0\n" + bytes([0xFF, 0xFE, 0x81]) + b",2,1\n")
    with pytest.raises(ValueError, match=r"not a text table of numbers") as e:
        jp.data.load_csv(path)
    one_line(str(e.value), path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(ValueError, match=r"not a text table of numbers"):
        jp.data.load_csv(path)


# ---------------------------------------------------------- a run's folder
RUN = [
    "--data", "moons", "--n-train", "64", "--n-test", "64", "--sizes", "2,64,64,1",
    "--steps", "200", "--log-every", "20", "--seeds", "2", "--quiet",
    "--no-gradcheck",
]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished runs that differ only in their learning rate."""
    root = tmp_path_factory.mktemp("runs")
    for name, lr in (("run", "0.1"), ("other", "0.3")):
        assert main(["train", *RUN, "--lr", lr, "--out", str(root / name)]) == 0
    return root


def copy_run(runs: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(runs / "run", out)
    return out


def resume(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jaxprop", "train", "--resume", str(out), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_same_final(a: Path, b: Path) -> None:
    with np.load(a / "final.npz") as x, np.load(b / "final.npz") as y:
        assert x.files == y.files
        for k in x.files:
            assert x[k].tobytes() == y[k].tobytes(), k


@pytest.mark.faults
@pytest.mark.parametrize("how", DAMAGES)
def test_resume_names_a_damaged_checkpoint_and_how_to_go_on(runs, tmp_path, how):
    """One line, status 2: the file and its damage, what is intact, and the
    ways on; the first of them (delete the checkpoint, --resume again) trains
    the run again to the same bits."""
    out = copy_run(runs, tmp_path)
    damage(out / "checkpoint.npz", how, zlib.crc32(f"resume {how}".encode()))
    done = resume(out)
    assert done.returncode == 2, done.stderr
    message = one_line(done.stderr, f"jaxprop train: --resume: {out}/checkpoint.npz")
    assert f"checkpoint.npz: {DAMAGED[how][:21]}".replace("\\", "") in message
    assert (
        "config.json and the finished run's results (final.npz, curves.npz, "
        "metrics.json: jp.load_run reads them) are intact" in message
    )
    assert (
        f"delete {out}/checkpoint.npz and run jaxprop train --resume {out} again"
        in message
    )
    if how == "zero":  # the advice holds
        (out / "checkpoint.npz").unlink()
        assert main(["train", "--resume", str(out), "--quiet"]) == 0
        assert_same_final(out, runs / "run")


@pytest.mark.faults
def test_resume_refuses_another_runs_checkpoint(runs, tmp_path):
    """A checkpoint of a run with other settings (here its learning rate, which
    the arrays' shapes cannot tell) would resume silently with its values."""
    out = copy_run(runs, tmp_path)
    shutil.copy(runs / "other" / "checkpoint.npz", out / "checkpoint.npz")
    done = resume(out)
    assert done.returncode == 2, done.stderr
    message = one_line(done.stderr, f"jaxprop train: --resume: {out}/checkpoint.npz")
    assert (
        f"saved by another run than {out}/config.json describes: hparams (saved "
        f"{{'optimizer.learning_rate': ['0.3']}}, this trainer "
        f"{{'optimizer.learning_rate': ['0.1']}})" in message
    )


@pytest.mark.faults
def test_resume_says_only_what_is_intact(runs, tmp_path):
    """A damaged final.npz and a missing metrics.json are not called intact."""
    out = copy_run(runs, tmp_path)
    damage(out / "checkpoint.npz", "truncate", zlib.crc32(b"intact checkpoint"))
    damage(out / "final.npz", "flip", zlib.crc32(b"intact final"))
    (out / "metrics.json").unlink()
    done = resume(out)
    assert done.returncode == 2, done.stderr
    message = one_line(done.stderr, f"jaxprop train: --resume: {out}/checkpoint.npz")
    assert "config.json, curves.npz are intact. To go on" in message
    assert "final.npz" not in message
    (out / "curves.npz").unlink()
    message = resume(out).stderr
    assert "config.json is intact. To go on" in message


@pytest.mark.faults
@pytest.mark.parametrize(
    "name, how, problem",
    [
        ("final.npz", "flip", DAMAGED["flip"]),
        ("final.npz", "truncate", DAMAGED["truncate"]),
        ("curves.npz", "flip", DAMAGED["flip"]),
        ("metrics.json", "truncate", r"not readable JSON \("),
    ],
)
def test_load_run_names_a_damaged_file(runs, tmp_path, name, how, problem):
    out = copy_run(runs, tmp_path)
    damage(out / name, how, zlib.crc32(f"{name} {how}".encode()))
    with pytest.raises(ValueError, match=problem) as e:
        jp.load_run(out)
    one_line(str(e.value), out / name)
