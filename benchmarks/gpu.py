"""The GPU study: what a machine with a GPU measures, in one command.

``python -m benchmarks gpu`` runs, when JAX's first device is a GPU, the
``step-time`` and ``seed-scaling`` studies (under their own names in the result
file) and this module's two:

- ``xor``: XOR 2-2-1 over 10^6 seeds (full and quick sizes) by
  ``jp.train_seeds`` with ``strategy="auto"``, which on a GPU is one vmap over
  every run that fits in memory; seed-epochs per second, and the layout
  ``auto`` chose.
- ``utilization``: the training step of ``784-1024-1024-1024-10`` (ReLU,
  softmax cross-entropy, batch 512, float32, SGD; utilization.py's), for 1 run
  and vmapped over several runs (batched matmuls), with manual and automatic
  gradients, at matmul precision ``float32`` (true FP32) and ``tensorfloat32``
  (TF32 tensor cores), against the GPU's peak for that precision
  (:data:`PEAKS`) and against the matmul ceiling measured in the same run.

Without a GPU the study records why it did not run (``{"skipped": reason}``)
and ``python -m benchmarks gpu`` prints the reason and exits 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import jaxprop as jp
from benchmarks import steps, utilization
from benchmarks._common import calibrate, median, timed

#: Dense peaks in TFLOP/s by ``device_kind`` substring (first match wins): FP32
#: on the CUDA cores, TF32 on the tensor cores without 2:4 sparsity (NVIDIA's
#: datasheets print TF32 with sparsity; dense is half). Sources, read through
#: copies since nvidia.com was not reachable from here:
#: - H100 SXM: FP32 67, TF32 989 with sparsity; H100 PCIe: FP32 51, TF32 756
#:   with sparsity (NVIDIA's H100 datasheet table, reproduced at
#:   archive-lib.hpctech.co.jp/gpuproduct/nvidia-h100.html; glennklockwood.com
#:   /garden/processors/h100 gives 66.9 and 494.7 dense).
#: - H200 SXM: the H100 SXM's GH100 compute with more memory (itkb.uw.cz, "H200
#:   vs B300", and glennklockwood.com): same figures. NVIDIA's H200 datasheet
#:   itself was not reached, nor figures for H100 NVL or H200 NVL (left out).
#: - A100 (SXM and PCIe): FP32 19.5, TF32 156 dense (NVIDIA's A100 datasheet,
#:   as cited at glennklockwood.com/garden/processors/A100).
PEAKS = (
    ("H100 PCIe", {"fp32": 51.0, "tf32": 378.0}),
    ("H100 NVL", None),
    ("H200 NVL", None),
    ("H100", {"fp32": 67.0, "tf32": 494.7}),
    ("H200", {"fp32": 67.0, "tf32": 494.7}),
    ("A100", {"fp32": 19.5, "tf32": 156.0}),
)

#: Matmul precision (``jax.default_matmul_precision``) -> the peak it is held
#: against. JAX's default on A100/H100 is TF32 (jax-ml/jax#18934).
PRECISIONS = {"float32": "fp32", "tensorfloat32": "tf32"}

SIZES = {
    "full": {
        "xor_seeds": 10**6,
        "xor_epochs": 2000,
        "sizes": (784, 1024, 1024, 1024, 10),
        "batch": 512,
        "runs": (1, 8, 64),
        "target_s": 0.2,
    },
    "quick": {
        "xor_seeds": 10**6,
        "xor_epochs": 200,
        "sizes": (784, 1024, 1024, 1024, 10),
        "batch": 512,
        "runs": (1, 16),
        "target_s": 0.05,
    },
    "smoke": {
        "xor_seeds": 64,
        "xor_epochs": 10,
        "sizes": (64, 128, 10),
        "batch": 64,
        "runs": (1, 2),
        "target_s": 0.001,
    },
}


def why_not() -> str | None:
    """Why the study cannot run here (no GPU), or None when it can."""
    device = jax.devices()[0]
    if device.platform == "gpu":
        return None
    return (
        f"no GPU: JAX's first device is {device.platform!r} ({device.device_kind}); "
        "run `PYTHONPATH=. python3 -m benchmarks gpu` on a machine with a GPU "
        "and jax[cuda12]"
    )


def peak_tflops(device_kind: str) -> dict | None:
    """{"fp32", "tf32"} dense peaks in TFLOP/s of a ``device_kind``, None if unknown."""
    if not isinstance(device_kind, str):
        raise ValueError(f"device_kind must be a string; got {device_kind!r}.")
    for name, peak in PEAKS:
        if name.lower() in device_kind.lower():
            return peak
    return None


def bench_xor(size: str, repeats: int) -> dict:
    """Seed-epochs per second of XOR over 10^6 seeds, ``strategy="auto"``."""
    s = SIZES[size]
    n_seeds, epochs = s["xor_seeds"], s["xor_epochs"]
    net = jp.MLP((2, 2, 1), "sigmoid", "sigmoid", "mse", "sum")
    x, y = jp.data.xor()
    sgd = optax.sgd(0.1)
    keys = jax.random.split(jax.random.key(0), n_seeds)
    options = dict(scheme="uniform01", dtype="float32", log_every=epochs // 10)
    trainer = jp.Trainer(net, keys, x, y, sgd, epochs, **options)

    def run():
        return trainer.result(trainer.advance(trainer.init(), epochs)).losses

    (first, times) = timed({"auto": run}, repeats)["auto"]
    losses = run()
    out = {
        "network": "XOR 2-2-1 sigmoid, full batch of 4, SGD 0.1, float32",
        "n_seeds": n_seeds,
        "epochs": epochs,
        "log_every": options["log_every"],
        "strategy": list(trainer.strategy),
        "first_call_s": first,
        "times_s": times,
        "median_s": median(times),
        "seed_epochs_per_s": n_seeds * epochs / median(times),
        "final_loss_median": float(jnp.nanmedian(losses[:, -1])),
    }
    print(
        f"  XOR, {n_seeds} seeds x {epochs} epochs ({out['strategy']}): "
        f"{out['seed_epochs_per_s']:.3g} seed-epochs/s "
        f"({first:.1f} s first call)"
    )
    return out


def make_runs_loop(net: jp.MLP, grad: str):
    """``loop(params, x, y, k)``: k SGD steps of every run (leading axis) at once."""
    step = jax.vmap(steps.make_step(net, grad), in_axes=(0, None, None))

    @jax.jit
    def loop(params, x, y, k):
        return jax.lax.fori_loop(0, k, lambda _, p: step(p, x, y)[1], params)

    return loop


def _under(precision: str, fn):
    """``fn`` called at matmul precision ``precision``: traced and run there."""

    def call(*args):
        with jax.default_matmul_precision(precision):
            return fn(*args)

    return call


def bench_peak_utilization(size: str, repeats: int, peak: dict | None) -> dict:
    """The large MLP's step over 1 and more runs, per precision, vs the peaks."""
    s = SIZES[size]
    sizes, batch = s["sizes"], s["batch"]
    net = jp.MLP(sizes, "relu", "identity", "softmax_cross_entropy", "mean")
    k_params, k_x, k_y = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k_x, (batch, sizes[0]), jnp.float32)
    y = jax.random.randint(k_y, (batch,), 0, sizes[-1])
    rows, ceilings = [], {}
    for precision, peak_name in PRECISIONS.items():
        with jax.default_matmul_precision(precision):
            ceilings[precision] = utilization.matmul_ceiling(
                sizes, batch, repeats, s["target_s"]
            )
        for n_runs in s["runs"]:
            run_keys = jax.random.split(k_params, n_runs)
            params = jax.vmap(lambda k: net.init(k, dtype="float32"))(run_keys)
            make = steps.make_loop if n_runs == 1 else make_runs_loop
            if n_runs == 1:
                params = jax.tree.map(lambda l: l[0], params)
            loops = {g: _under(precision, make(net, g)) for g in steps.GRADS}
            k = calibrate(lambda k: loops["manual"](params, x, y, k), s["target_s"])
            results = timed(
                {g: (lambda g=g: loops[g](params, x, y, k)) for g in steps.GRADS},
                repeats,
            )
            flops = n_runs * net.flops(batch)
            for g in steps.GRADS:
                step_s = median(results[g][1]) / k
                tflops = flops / step_s / 1e12
                row = {
                    "precision": precision,
                    "runs": n_runs,
                    "grad": g,
                    "steps_per_call": k,
                    "flops_per_step": flops,
                    "step_s": step_s,
                    "times_s": [t / k for t in results[g][1]],
                    "tflops": tflops,
                    "peak_tflops": None if peak is None else peak[peak_name],
                    "of_peak": None if peak is None else tflops / peak[peak_name],
                    "of_ceiling": tflops / (ceilings[precision]["gflops"] / 1e3),
                }
                rows.append(row)
                of_peak = (
                    "peak unknown"
                    if row["of_peak"] is None
                    else f"{100 * row['of_peak']:.0f}% of {peak_name.upper()} peak"
                )
                print(
                    f"  {precision:>13}, {n_runs:>3} run(s), {g:>8}: "
                    f"{step_s * 1e3:.3f} ms/step, {tflops:.2f} TFLOP/s = {of_peak}, "
                    f"{100 * row['of_ceiling']:.0f}% of the measured ceiling"
                )
    return {
        "network": list(sizes),
        "batch": batch,
        "ceilings": ceilings,
        "rows": rows,
    }


def bench_gpu(size: str, repeats: int) -> dict:
    """The 10^6-seed XOR and the peak utilization; a skip record without a GPU."""
    reason = why_not()
    if reason is not None:
        return {"skipped": reason}
    return run_parts(size, repeats)


def run_parts(size: str, repeats: int) -> dict:
    """This study's own measurements on whatever device JAX uses first."""
    device = jax.devices()[0]
    peak = peak_tflops(device.device_kind)
    stats = device.memory_stats() or {}
    out = {
        "device_kind": device.device_kind,
        "peak_tflops": peak,
        "bytes_limit": stats.get("bytes_limit"),
        "matmul_precisions": dict(PRECISIONS),
    }
    out["xor"] = bench_xor(size, repeats)
    out["utilization"] = bench_peak_utilization(size, repeats, peak)
    return out
