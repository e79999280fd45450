"""Test configuration: float64 on, reproducible keys per test, LLVM at -O0,
one compilation cache for the run."""

import os
import zlib

# Compiling is most of this suite's time (hundreds of small programs, each in
# every process that runs it), and its steps are too few for the compiled
# code's speed to matter: XLA's CPU backend hands each kernel to LLVM at -O3 by
# default, and -O0 compiles the same programs to the same results in less time
# (the measurements: docs/design.md, "Test time"). Set before jax starts;
# subprocesses inherit it (``helpers.xla_flags``). Give the flag yourself to
# run at another level, e.g. XLA_FLAGS=--xla_backend_optimization_level=3.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(
        [*os.environ.get("XLA_FLAGS", "").split(), "--xla_backend_optimization_level=0"]
    )

# Many tests compile the same programs: in both workers, again after each
# module's cache is cleared (below), and in the subprocesses of the command,
# the scripts and the pages. JAX's persistent compilation cache, one folder
# for the whole run and its subprocesses (and for -m slow after it), compiles
# each once. Keyed by the program, the flags and the versions, it never
# serves another's. Give JAX_COMPILATION_CACHE_DIR yourself to put it
# elsewhere, or "" to turn it off.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(os.path.dirname(__file__), os.pardir, ".pytest_cache", "jax"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax
import pytest

# Gradient checks need float64 to reach 1e-10 agreement; tests that want float32
# ask for it explicitly.
jax.config.update("jax_enable_x64", True)


@pytest.fixture
def seed(request):
    """An integer seed derived from the test id (crc32 is stable across processes)."""
    return zlib.crc32(request.node.nodeid.encode())


@pytest.fixture
def key(seed):
    """A PRNG key derived from the test id."""
    return jax.random.key(seed)


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drops every compiled program after each test module. A worker that
    compiles thousands (the slow conv sets) otherwise passes the kernel's
    65530 memory maps per process, and XLA's next compile segfaults."""
    yield
    jax.clear_caches()


def heavy_tests() -> set[str]:
    """The node ids of tests/heavy.txt: default-suite tests measured at ≥ 3 s."""
    path = os.path.join(os.path.dirname(__file__), "heavy.txt")
    with open(path, encoding="utf-8") as f:
        lines = [line.split() for line in f if line.strip() and line[0] != "#"]
    return {fields[1] for fields in lines}


@pytest.hookimpl(tryfirst=True)  # before -m selects by the markers
def pytest_collection_modifyitems(config, items):
    """Marks tests/heavy.txt's tests slow: they run with .ci/run's -m slow."""
    heavy = heavy_tests()
    for item in items:
        if item.nodeid in heavy:
            item.add_marker(pytest.mark.slow)
