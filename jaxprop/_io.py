"""Saving and loading pytrees bit for bit: one ``.npz`` file, written atomically.

A file holds every leaf of a pytree (params, optimizer states, a ``TrainState``
with its PRNG keys) under its key path, with a small JSON header; ``load`` with a
template (``like``) rebuilds the same pytree and checks every path, shape and
dtype against it. Nothing is pickled: loading never runs code from a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ._core.random import FUSED_NAME

_FORMAT = "jaxprop.pytree"
_VERSION = 1
_HEADER = "__jaxprop__"
_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
#: What reading a damaged .npz raises: zipfile's checks (a member's CRC, a
#: missing table of contents, the fields of a damaged one), zlib's (a
#: compressed member), a short read, and NumPy's parser of a member's header.
DAMAGE = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,  # a damaged table of contents names no known method
    RuntimeError,  # ... or sets a member's "encrypted" flag
    struct.error,
)


def _is_key(leaf) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _encode(leaf) -> tuple[np.ndarray, dict]:
    """(array to store, header entry) of one leaf."""
    if isinstance(leaf, (bool, int, float)) and not isinstance(leaf, np.generic):
        kind = type(leaf).__name__
        return np.asarray(leaf), {"kind": kind}
    if _is_key(leaf):
        impl = str(jax.random.key_impl(leaf))
        if impl == FUSED_NAME:  # a fused key is the Threefry key it rewraps
            impl = "threefry2x32"
        return np.asarray(jax.random.key_data(leaf)), {"kind": "key", "impl": impl}
    if not hasattr(leaf, "dtype") or not hasattr(leaf, "shape"):
        raise TypeError(
            f"tree leaves must be arrays, PRNG keys or Python scalars; got "
            f"{type(leaf).__name__}."
        )
    arr = np.asarray(leaf)
    entry = {"kind": "array", "dtype": arr.dtype.name}
    if np.dtype(arr.dtype.str) != arr.dtype:
        # Types NumPy cannot name in a file (bfloat16, float8, ...) are stored
        # as unsigned integers of the same width and viewed back on load.
        arr = arr.view(f"u{arr.dtype.itemsize}")
    return arr, entry


def _decode(arr: np.ndarray, entry: dict):
    kind = entry["kind"]
    if kind in ("bool", "int", "float"):
        return {"bool": bool, "int": int, "float": float}[kind](arr[()])
    if kind == "key":
        return jax.random.wrap_key_data(jnp.asarray(arr), impl=entry["impl"])
    dtype = jnp.dtype(entry["dtype"])
    return arr.view(dtype) if arr.dtype != dtype else arr


def digest(arrays, *, integers_by_value: bool = False) -> str:
    """SHA-256 (hex) of arrays' shapes, dtypes and bits, in order (None skipped).

    ``integers_by_value``: integer arrays as int64, so that equal values digest
    alike whatever their integer dtype.
    """
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            continue
        a = np.ascontiguousarray(a)
        if integers_by_value and np.issubdtype(a.dtype, np.integer):
            a = a.astype(np.int64)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Calls ``write(file)`` on a temporary file beside ``path``, then renames it.

    The rename is atomic: a reader (or a crash mid-write) sees the old file or
    the new one, never half of one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
    return path


def save(path: str | os.PathLike, tree, *, meta: dict | None = None) -> Path:
    """Writes a pytree to ``path`` (an ``.npz`` file) atomically, bit for bit.

    Args:
      path: the file to write (replaced atomically if it exists).
      tree: any pytree of arrays (NumPy or JAX, any dtype), PRNG key arrays and
        Python scalars, e.g. params, an optimizer state or a ``jp.TrainState``.
      meta: optional JSON-serializable facts stored beside the tree (read back
        with :func:`saved_meta`); ``Trainer.save`` records its settings there.

    Returns:
      The path written.
    """
    path = Path(path)
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    arrays, entries = {}, []
    for i, (key_path, leaf) in enumerate(leaves):
        arr, entry = _encode(leaf)
        entry["path"] = jax.tree_util.keystr(key_path)
        arrays[f"leaf{i}"] = arr
        entries.append(entry)
    header = {"format": _FORMAT, "version": _VERSION, "leaves": entries}
    if meta is not None:
        header["meta"] = meta
    header = json.dumps(header)
    arrays[_HEADER] = np.frombuffer(header.encode(), np.uint8)
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def saved_meta(path: str | os.PathLike) -> dict | None:
    """The ``meta`` that :func:`save` stored in ``path`` (None if none)."""
    return _read(Path(path), leaves=False)[0].get("meta")


def _damaged(path: Path, error: Exception) -> ValueError:
    reason = str(error) or type(error).__name__
    if reason == "File is not a zip file":  # it starts like one: its end is gone
        reason = "truncated, or its end overwritten: no zip table of contents"
    return ValueError(f"{path}: the file is damaged ({reason}).")


def open_npz(path: str | os.PathLike) -> np.lib.npyio.NpzFile:
    """The ``.npz`` archive ``path``, open; read its arrays with :func:`npz_array`.

    Raises:
      ValueError: naming ``path``: no such file, not a zip archive, or damaged.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: no such file {str(path)!r}.")
    with open(path, "rb") as f:
        magic = f.read(len(_NPY_MAGIC))
    if magic.startswith(_NPY_MAGIC):
        raise ValueError(
            f"{path}: a single .npy array, not a .npz archive of named arrays."
        )
    if not magic.startswith(_ZIP_MAGIC):  # np.load would speak of pickles
        raise ValueError(
            f"{path}: not a readable .npz file (an .npz is a zip archive; "
            f"this file does not start like one)."
        )
    # What np.load makes of a zip (never unpickling), but the file is closed
    # when the zip cannot be read (np.load leaves it open then).
    fid = open(path, "rb")
    try:
        return np.lib.npyio.NpzFile(fid, own_fid=True)
    except DAMAGE as e:
        fid.close()
        raise _damaged(path, e) from None
    except BaseException:
        fid.close()
        raise


def npz_array(f: np.lib.npyio.NpzFile, name: str, path) -> np.ndarray:
    """The array ``name`` of ``f`` (opened from ``path`` by :func:`open_npz`).

    NpzFile reads (and checks) a member only here, so a damaged one fails here.

    Raises:
      ValueError: naming ``path`` and the damage (e.g. a member's bad CRC-32),
        or what NumPy refuses in the member (e.g. pickled objects).
    """
    try:
        return f[name]
    except KeyError:  # member names are not under the zip's checksums
        raise ValueError(
            f"{path}: no array named {name!r} (damaged, or another file); it "
            f"holds {sorted(f.files)}."
        ) from None
    except UnicodeDecodeError as e:  # a member's .npy header, overwritten
        raise _damaged(Path(path), e) from None
    except ValueError as e:  # NumPy's, on the member's .npy header or dtype
        raise ValueError(f"{path}: array {name!r} cannot be read ({e}).") from None
    except DAMAGE as e:
        raise _damaged(Path(path), e) from None


def _parse_header(text: bytes) -> dict:
    """A file's JSON header; {} where it is none (another program's file)."""
    try:
        header = json.loads(text.decode())
    except ValueError:  # not UTF-8, or not JSON
        return {}
    return header if isinstance(header, dict) else {}


def _read(path: Path, leaves: bool = True) -> tuple[dict, list]:
    """(header, leaves) of a file written by :func:`save`; no leaves unless asked."""
    with open_npz(path) as f:
        # A zip read whole whose header is missing or unreadable: a foreign
        # file, or damage that zip's checksums do not cover (its member names).
        unsure = "damaged, or not written by jp.save"
        if _HEADER not in f.files:
            raise ValueError(f"{path}: no jaxprop header ({unsure}).")
        header = _parse_header(npz_array(f, _HEADER, path).tobytes())
        entries = header.get("leaves")
        if header.get("format") == _FORMAT and header.get("version") != _VERSION:
            raise ValueError(
                f"{path}: written in version {header.get('version')!r} of jp.save's "
                f"format; this jaxprop reads version {_VERSION}."
            )
        if (
            header.get("format") != _FORMAT
            or not isinstance(entries, list)
            or not {f"leaf{i}" for i in range(len(entries))} <= set(f.files)
        ):
            raise ValueError(f"{path}: its jaxprop header cannot be read ({unsure}).")
        if not leaves:
            return header, []
        arrays = [npz_array(f, f"leaf{i}", path) for i in range(len(entries))]
    return header, [_decode(a, e) for a, e in zip(arrays, entries, strict=True)]


def _describe(leaf) -> tuple[tuple[int, ...], str]:
    if isinstance(leaf, (bool, int, float)) and not isinstance(leaf, np.generic):
        return (), type(leaf).__name__
    dtype = leaf.dtype
    if _is_key(leaf):
        return tuple(leaf.shape), "key"
    return tuple(leaf.shape), jnp.dtype(dtype).name


def load(path: str | os.PathLike, like=None):
    """Reads a pytree written by :func:`save`.

    Args:
      path: the ``.npz`` file.
      like: a pytree of the same structure (e.g. ``net.init(key)``,
        ``trainer.init()``; leaves may be ``jax.ShapeDtypeStruct``). Every key
        path, shape and dtype must match it.

    Returns:
      With ``like``: a pytree of its structure whose array leaves are NumPy
      arrays holding the saved bits (PRNG keys as JAX key arrays, Python scalars
      as Python scalars). Without: a dict from key path to leaf.

    Raises:
      ValueError: a missing or unreadable file, or one that does not match ``like``.
    """
    path = Path(path)
    header, leaves = _read(path)
    entries = header["leaves"]
    if like is None:
        return {e["path"]: leaf for e, leaf in zip(entries, leaves, strict=True)}
    template, treedef = jax.tree_util.tree_flatten_with_path(like)
    want = [jax.tree_util.keystr(p) for p, _ in template]
    got = [e["path"] for e in entries]
    if want != got:
        missing = [p for p in want if p not in got][:3]
        extra = [p for p in got if p not in want][:3]
        raise ValueError(
            f"{path}: the saved tree does not have like's structure "
            f"({len(got)} leaves saved, {len(want)} expected; missing {missing}, "
            f"unexpected {extra})."
        )
    for (key_path, expected), leaf in zip(template, leaves, strict=True):
        if _describe(expected) != _describe(leaf):
            shape, dtype = _describe(leaf)
            raise ValueError(
                f"{path}: leaf {jax.tree_util.keystr(key_path)} is {dtype} of "
                f"shape {shape}; like expects {_describe(expected)[1]} of shape "
                f"{_describe(expected)[0]}."
            )
    return jax.tree_util.tree_unflatten(treedef, leaves)
