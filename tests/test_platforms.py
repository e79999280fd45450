"""The device-aware cost model: ``auto``'s choice per platform, without a GPU.

Fake devices stand in for GPUs and TPUs (``platform`` and ``memory_stats()`` are
all ``auto`` reads); the CPU's choices are pinned to what they were before the
cost model knew platforms.
"""

import jax
import numpy as np
import optax
import pytest

import jaxprop as jp
from jaxprop._core.platforms import PLATFORM_COSTS, platform_costs
from jaxprop._engine.layout import (
    AUTO_RUNS_LAST_CHUNK,
    _memory_budget,
    _memory_plan,
)
from jaxprop._engine.loop import _Config
from jaxprop._network import runs_last_pays
from tests.helpers import (
    assert_trees_close,
    choose_strategy,
    options_of,
    value_and_backprop_runs_last,
)
from tests.test_runs_last import per_run, stacked_cases

GiB = 2**30
GPU = PLATFORM_COSTS["gpu"]


class FakeDevice:
    """What ``auto`` reads of a device: its platform and memory statistics."""

    def __init__(self, platform="gpu", stats=None, process_index=0):
        self.platform = platform
        self.stats = stats
        self.process_index = process_index

    def memory_stats(self):
        return self.stats


def gpu(limit_gib=None, in_use_gib=0.0):
    """A fake GPU with ``limit_gib`` GiB for XLA (None: no memory statistics)."""
    if limit_gib is None:
        return FakeDevice("gpu", None)
    stats = {"bytes_limit": int(limit_gib * GiB), "bytes_in_use": int(in_use_gib * GiB)}
    return FakeDevice("gpu", stats)


RULES = {
    "backprop": jp.rules.backprop,
    "autodiff": jp.rules.autodiff,
    "fa": jp.rules.feedback_alignment,
}


def config(sizes, rule="backprop", optimizer=None, batch=None, steps=10, log=10):
    """The static configuration of runs of a ``sizes`` network (10 outputs:
    classes)."""
    classes = sizes[-1] == 10
    net = jp.MLP(
        sizes,
        "relu" if classes else "sigmoid",
        "identity" if classes else "sigmoid",
        "softmax_cross_entropy" if classes else "mse",
        "mean",
    )
    optimizer = optimizer or optax.sgd(0.1)
    return _Config(net, optimizer, steps, RULES[rule](), batch, log, None)


# (sizes, rule, optimizer, batch, n_examples, itemsize, n_devices, n_runs) ->
# (strategy, chunk_size), as main chose them before the cost model knew
# platforms (computed from commit c03a5f4), but for runs-last chunks of at
# least 1536 runs per device (768 before the whole scan ran runs last).
CPU_CASES = [
    (((2, 2, 1), "backprop", "adam", None, 4, 4, 1, 100000), ("chunked", 1516)),
    (((2, 2, 1), "autodiff", "adam", None, 4, 4, 1, 100000), ("chunked", 430)),
    (((2, 2, 1), "backprop", "adam", None, 4, 8, 2, 5000), ("chunked", 2500)),
    (((32, 32, 32, 10), "backprop", "adam", 128, 1000, 4, 1, 1000), ("chunked", 4)),
    (((32, 32, 32, 10), "fa", "adam", 128, 1000, 8, 2, 333), ("chunked", 8)),
    (
        ((32, 128, 128, 10), "backprop", "adam", 128, 1000, 4, 1, 64),
        ("sequential", None),
    ),
    (((32, 128, 128, 10), "backprop", "adam", 128, 1000, 4, 4, 64), ("chunked", 4)),
    (((784, 1024, 10), "backprop", "adam", 16, 1000, 4, 1, 8), ("sequential", None)),
    (((2, 2, 1), "backprop", "sgd", None, 4, 4, 1, 100), ("vmap", 100)),
    (((2, 2, 1), "backprop", "sgd", None, 4, 4, 2, 7), ("vmap", 8)),
    (((8, 16, 4), "backprop", "sgd", 8, 64, 4, 1, 3000), ("chunked", 25)),
    (((8, 16, 4), "backprop", "sgd", None, 64, 8, 2, 3000), ("chunked", 8)),
]
OPTIMIZERS = {"adam": optax.adam(1e-3), "sgd": optax.sgd(1e-3)}


@pytest.mark.parametrize("devices", ["none", "cpu", "unknown platform"])
@pytest.mark.parametrize(
    "case, expected", CPU_CASES, ids=[str(c[0]) for c in CPU_CASES]
)
def test_cpu_choices_are_unchanged(case, expected, devices):
    sizes, rule, opt, batch, n_examples, itemsize, n_devices, n_runs = case
    cfg = config(sizes, rule, OPTIMIZERS[opt], batch)
    platform = {"none": None, "cpu": "cpu", "unknown platform": "metal"}[devices]
    fakes = None if platform is None else [FakeDevice(platform)] * n_devices
    got = choose_strategy(
        cfg, n_runs, "auto", None, n_examples, itemsize, n_devices, devices=fakes
    )
    assert got == expected


def test_run_bytes_by_hand():
    # XOR 2-2-1 (9 parameters), Adam (mu, nu: 9 each; a count), 20 logged
    # blocks, float32: kept = 2 (9 + 19 + 0 + 20) elements; a step's
    # temporaries = 2·9 (gradients, updates) + 19 (new moments) + 4·4·5
    # (z, a, δ and the inputs of a batch of 4 over 5 units).
    cfg = config((2, 2, 1), optimizer=optax.adam(1e-3), steps=200, log=10)
    plan = _memory_plan(options_of(cfg, 1, 4, 4, [gpu(1)]), GPU)
    assert plan.kept == 4 * 2 * (9 + 19 + 20)
    assert plan.step == 4 * (2 * 9 + 19 + 4 * 4 * 5)
    assert plan.shared == 4 * 4 * (2 + 1)
    # Feedback alignment keeps B (the transposes of W² onwards: 2 more numbers);
    # an evaluation over 1000 examples outgrows a step's activations.
    fa = config((2, 2, 1), "fa", optax.sgd(0.1), steps=200, log=10)
    plan = _memory_plan(options_of(fa, 1, 4, 4, [gpu(1)], n_eval=1000), GPU)
    assert plan.kept == 4 * 2 * (9 + 0 + 2 + 20)
    assert plan.step == 4 * (2 * 9 + 2 * 1000 * 5)


def test_budget_is_a_fraction_of_free_memory():
    assert _memory_budget(gpu(80, in_use_gib=10), GPU) == int(0.5 * 70 * GiB)
    assert _memory_budget(gpu(None), GPU) == int(0.5 * GPU.fallback_bytes)
    # A limit of another type, or none, falls back too.
    assert _memory_budget(FakeDevice("gpu", {"bytes_in_use": 5}), GPU) == int(
        0.5 * GPU.fallback_bytes
    )
    assert _memory_budget(gpu(1, in_use_gib=2), GPU) == 0


@pytest.mark.parametrize("platform", ["gpu", "tpu"])
@pytest.mark.parametrize("n_devices", [1, 2, 8])
@pytest.mark.parametrize("n_runs", [1, 7, 1000, 10**6])
def test_accelerators_vmap_every_run_that_fits(n_runs, n_devices, platform):
    # XOR over up to a million seeds fits in 40 GiB (or in the fallback's 8):
    # one vmap, however many runs, where the CPU would chunk.
    cfg = config((2, 2, 1), steps=2000, log=2000)
    for device in (gpu(40), gpu(None)):
        device.platform = platform
        got = choose_strategy(
            cfg, n_runs, "auto", None, 4, 4, n_devices, devices=[device] * n_devices
        )
        assert got == ("vmap", -(-n_runs // n_devices) * n_devices)
    if n_runs > AUTO_RUNS_LAST_CHUNK * n_devices:
        assert choose_strategy(cfg, n_runs, "auto", None, 4, 4, n_devices)[0] == (
            "chunked"
        )


@pytest.mark.parametrize("n_devices", [1, 2, 4])
@pytest.mark.parametrize("limit_gib", [2, 4, 16, 64])
@pytest.mark.parametrize("n_runs", [3, 40, 100, 1000])
def test_accelerators_chunk_only_to_fit_the_budget(n_runs, limit_gib, n_devices):
    # 784-1024-1024-10 with Adam, batch 128: 45 MB kept per run (state and
    # log, twice), 36 MB of temporaries per run in a step.
    cfg = config((784, 1024, 1024, 10), optimizer=optax.adam(1e-3), batch=128)
    devices = [gpu(limit_gib, in_use_gib=0.25)] * n_devices
    strategy, chunk = choose_strategy(
        cfg, n_runs, "auto", None, 6000, 4, n_devices, devices=devices
    )
    plan = _memory_plan(options_of(cfg, n_runs, 6000, 4, devices), GPU)
    used = plan.used(n_runs, n_devices, chunk or 1)
    if plan.used(n_runs, n_devices, n_runs) <= plan.budget:
        assert (strategy, chunk) == ("vmap", -(-n_runs // n_devices) * n_devices)
    elif plan.per_device == 1:
        # One run per device at a time: the least a step can take.
        expected = ("sequential", None) if n_devices == 1 else ("chunked", n_devices)
        assert (strategy, chunk) == expected
    else:
        assert strategy == "chunked" and n_devices < chunk < n_runs
        assert chunk % n_devices == 0
        # No more chunks than the budget needs.
        assert -(-n_runs // chunk) == -(-n_runs // (plan.per_device * n_devices))
    # Never over the budget, wherever one run per device fits at all.
    if plan.used(n_runs, n_devices, n_devices) <= plan.budget:
        assert used <= plan.budget


def test_accelerators_chunk_and_fall_back_to_one_run_at_a_time():
    cfg = config((784, 1024, 1024, 10), optimizer=optax.adam(1e-3), batch=128)
    choose = lambda n, d: choose_strategy(  # noqa: E731
        cfg, n, "auto", None, 6000, 4, len(d), devices=d
    )
    # 12 GiB (a 6 GiB budget): 100 runs' state fits (4.5 GB), their
    # temporaries all at once (3.6 GB) do not: chunks of about 50.
    assert choose(100, [gpu(12)]) == ("chunked", 50)
    assert choose(100, [gpu(16)]) == ("vmap", 100)
    # 2 GiB: every run's state alone is over the budget: one run at a time.
    assert choose(100, [gpu(2)]) == ("sequential", None)
    assert choose(100, [gpu(2)] * 4) == ("chunked", 4)
    # The device with the least free memory sets the budget.
    assert choose(300, [gpu(64), gpu(12)]) == choose(300, [gpu(12)] * 2)
    assert choose(300, [gpu(64), gpu(12)]) != choose(300, [gpu(64)] * 2)


@pytest.mark.parametrize(
    "strategy, chunk_size, expected",
    [("vmap", None, ("vmap", 5000)), ("chunked", 64, ("chunked", 64))],
)
def test_explicit_strategies_ignore_the_platform(strategy, chunk_size, expected):
    cfg = config((784, 1024, 1024, 10), optimizer=optax.adam(1e-3), batch=128)
    got = choose_strategy(cfg, 5000, strategy, chunk_size, 6000, 4, 1, devices=[gpu(2)])
    assert got == expected


def test_runs_last_is_decided_per_platform(monkeypatch):
    net = jp.MLP((2, 2, 1), "sigmoid", "sigmoid", "mse", "sum")
    assert platform_costs("metal") is PLATFORM_COSTS["cpu"]
    assert all(runs_last_pays(net, 4, p) for p in ("cpu", "gpu", "tpu", "metal"))
    monkeypatch.setitem(PLATFORM_COSTS, "gpu", GPU._replace(runs_last=False))
    assert runs_last_pays(net, 4, "cpu") and not runs_last_pays(net, 4, "gpu")


@pytest.mark.parametrize("on_cpu", [True, False])
def test_platforms_that_disagree_compile_each_its_own_path(seed, on_cpu, monkeypatch):
    # With the CPU and the GPU deciding differently, the program carries both
    # paths (lax.platform_dependent) and the CPU compiles its own: runs-last
    # (no dot_general in the compiled program) or vmapped matmuls. Either way
    # each run's own value_and_backprop, to rounding.
    cpu, gpu_entry = PLATFORM_COSTS["cpu"], GPU
    monkeypatch.setitem(PLATFORM_COSTS, "cpu", cpu._replace(runs_last=on_cpu))
    monkeypatch.setitem(PLATFORM_COSTS, "gpu", gpu_entry._replace(runs_last=not on_cpu))
    net, params, x, y = stacked_cases(
        seed, (2, 2, 1), "sigmoid", "mse-sigmoid", "sum", 4
    )
    fn = jax.jit(jax.vmap(value_and_backprop_runs_last(net), in_axes=(0, None, None)))
    assert "platform_index" in str(jax.make_jaxpr(fn)(params, x[0], y[0]))
    compiled = fn.lower(params, x[0], y[0]).compile().as_text()
    assert ("dot" in compiled) != on_cpu
    value, grads = fn(params, x[0], y[0])
    ref_value, ref_grads = per_run(net, params, x[0], y[0], (0, None, None))
    np.testing.assert_allclose(value, ref_value, rtol=1e-13)
    assert_trees_close(grads, ref_grads, rtol=1e-12)


def test_trainer_rejects_devices_that_are_not_devices():
    x, y = jp.data.xor()
    net = jp.MLP((2, 2, 1), "sigmoid", "sigmoid", "mse", "sum")
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(TypeError, match=r"devices must be a sequence of jax.Device"):
        jp.Trainer(net, keys, x, y, optax.sgd(0.1), 10, devices=[gpu(8)])


def test_the_budget_is_read_from_this_process_s_devices_only(monkeypatch):
    """Under jax.distributed another process's GPU (``process_index`` not this
    process's) raises on memory_stats(): the budget comes from this process's
    devices, agreed (smallest) across processes in MiB, since the collective
    carries int32 and a budget passes 2 GiB."""
    from jaxprop._engine import layout as _layout

    class Elsewhere(FakeDevice):
        def memory_stats(self):
            raise RuntimeError("not addressable")

    here = gpu(40)
    agreed = []
    monkeypatch.setattr(
        _layout, "_agree_max", lambda v, spans: agreed.append(v) or v + 1024
    )
    elsewhere = Elsewhere("gpu", None, process_index=1)
    options = options_of(config((2, 2, 1)), 8, 4, 4, [here, elsewhere])
    plan = _layout._memory_plan(options, GPU)
    assert agreed == [-(_memory_budget(here, GPU) >> 20)]  # the max of minus: min
    assert plan.budget == _memory_budget(here, GPU) - GiB


def _conv_net():
    """ConvBase's first layer alone: 2 · 19 · 5 · 25 · 3 = 14250 FLOPs per
    example and step for the conv, plus the Dense layer's."""
    L = jp.layers
    return jp.Network(
        (40, 1),
        (L.Conv(25, 5, stride=2, padding=1), L.Flatten(), L.Dense(10)),
        cost="softmax_cross_entropy",
    )


def _strategy(net, batch, shape):
    x = np.zeros((512, *shape), np.float32)
    y = np.zeros(512, np.int32)
    keys = jax.random.split(jax.random.key(0), 64)
    trainer = jp.Trainer(
        net, keys, x, y, optax.sgd(0.1), 1, batch_size=batch, devices=jax.devices()[:1]
    )
    return trainer.strategy[0]


@pytest.mark.parametrize("batch", [1, 8, 64])
def test_auto_reads_the_conv_figure_for_conv_nets_only(monkeypatch, batch):
    """A conv net runs one at a time from ``conv_sequential_flops``; an MLP of
    more FLOPs, still under ``sequential_flops``, is vmapped."""
    figure = 2e5
    cpu = PLATFORM_COSTS["cpu"]
    monkeypatch.setitem(
        PLATFORM_COSTS, "cpu", cpu._replace(conv_sequential_flops=figure)
    )
    conv = _conv_net()
    sequential = _strategy(conv, batch, (40, 1)) == "sequential"
    assert sequential == (conv.flops(batch) >= figure)
    mlp = jp.MLP((40, 100, 10), cost="softmax_cross_entropy")
    assert figure <= mlp.flops(64) < cpu.sequential_flops
    assert _strategy(mlp, 64, (40,)) != "sequential"
