"""jp.use_all_cores and the command: one CPU device per core this process may
run on (its affinity, so ``taskset``-pinned processes take one device per
pinned core), the user's own count respected, a clear error when too late.

Device counts are fixed when JAX starts, so each case runs in a fresh
interpreter.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import jaxprop as jp

ROOT = Path(__file__).resolve().parents[1]
TASKSET = shutil.which("taskset")
FORCE = "--xla_force_host_platform_device_count"
AFFINITY = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
# Prints what use_all_cores returned, the devices JAX then made, and what a
# second call (after JAX started) returns.
SCRIPT = """
import jax, jax.numpy as jnp, jaxprop as jp
n = jp.use_all_cores()
jnp.zeros(1).block_until_ready()
print(n, jax.device_count(), jp.use_all_cores())
"""


def _env(xla_flags: str = "") -> dict:
    """This process's environment without any CPU device count of its own."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("JAX_NUM_CPU_DEVICES", None)
    kept = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(FORCE)]
    env["XLA_FLAGS"] = " ".join([*kept, xla_flags])
    return env


def _python(code: str, *, pin: str | None = None, xla_flags: str = ""):
    prefix = [TASKSET, "-c", pin] if pin is not None else []
    return subprocess.run(
        [*prefix, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(xla_flags),
    )


def _counts(done) -> list[int]:
    assert done.returncode == 0, done.stderr[-3000:]
    return [int(v) for v in done.stdout.split()]


@pytest.mark.skipif(AFFINITY is None, reason="no os.sched_getaffinity here")
def test_one_device_per_core_the_process_may_run_on():
    assert _counts(_python(SCRIPT)) == [AFFINITY] * 3


@pytest.mark.skipif(TASKSET is None, reason="no taskset")
def test_a_process_pinned_to_one_core_gets_one_device():
    assert _counts(_python(SCRIPT, pin="0")) == [1, 1, 1]


def test_a_device_count_in_xla_flags_is_respected():
    assert _counts(_python(SCRIPT, xla_flags=f"{FORCE}=3")) == [3, 3, 3]


def test_too_late_says_to_call_it_first(monkeypatch):
    """This process's JAX already started (conftest, other tests): the default
    count can no longer change."""
    monkeypatch.setenv(
        "XLA_FLAGS",
        " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if FORCE not in f),
    )
    jnp.zeros(1).block_until_ready()
    if jax.config.jax_num_cpu_devices >= 0:
        pytest.skip("this test process set its own jax_num_cpu_devices")
    import jaxprop._devices as devices

    started = len(jax.devices("cpu"))
    # As many cores as devices already: nothing is lost, nothing to say.
    monkeypatch.setattr(devices, "usable_cores", lambda: started)
    assert jp.use_all_cores() == started
    monkeypatch.setattr(devices, "usable_cores", lambda: started + 1)
    with pytest.raises(RuntimeError, match="too late") as error:
        jp.use_all_cores()
    message = str(error.value)
    assert "right after `import jaxprop as jp`" in message
    assert f"already started with {len(jax.devices('cpu'))} CPU device" in message
    # The flag, even now, is taken as the user's word: nothing to change.
    monkeypatch.setenv("XLA_FLAGS", f"--xla_cpu_use_thunk_runtime=true {FORCE}=5")
    assert jp.use_all_cores() == 5


@pytest.mark.skipif(TASKSET is None, reason="no taskset")
def test_the_command_counts_the_cores_it_is_pinned_to():
    """What the command sets up (``setup_jax``) under ``taskset -c 0``."""
    code = (
        "from jaxprop._cli.processes import setup_jax; setup_jax(); import jax; "
        "print(jax.device_count(), int(jax.config.jax_enable_x64))"
    )
    assert _counts(_python(code, pin="0")) == [1, 1]


@pytest.mark.slow  # two runs of the command (seconds each): .ci/run runs it
@pytest.mark.skipif(TASKSET is None or AFFINITY is None, reason="no taskset")
def test_a_pinned_train_command_records_one_device(tmp_path):
    args = [
        "train", "--data", "xor", "--sizes", "2,2,1", "--steps", "20",
        "--seeds", "4", "--log-every", "10",
    ]  # fmt: skip
    for pin, devices in (("0", 1), (None, AFFINITY)):
        out = tmp_path / f"run-{pin}"
        prefix = [TASKSET, "-c", pin] if pin is not None else []
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "jaxprop", *args, "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
            env=_env(),
        )
        assert done.returncode == 0, done.stderr[-3000:]
        config = json.loads((out / "config.json").read_text())
        assert config["versions"]["device"].endswith(f"× {devices}")
