"""XOR over many seeds: jaxprop against the baselines, on the same workload.

Workload: the reference network (2-2-1 sigmoid, summed ½‖ŷ − y‖², full-batch SGD
η = 0.1, U[0, 1) initial weights and biases) on the four XOR examples, trained
for ``epochs`` epochs from ``n_seeds`` independent initializations, in float32
and in float64. Contenders:

- the reference NumPy program (``benchmarks/numpy_xor.py``), one network in
  float64, as the reference document runs it;
- PyTorch, when installed (``benchmarks/torch_xor.py``): eager autograd on a
  batched ensemble, ``torch.func`` vmap-of-grad, and that under
  ``torch.compile``;
- plain JAX: ``jax.grad`` of a one-network loss, ``vmap`` over seeds, ``lax.scan``
  over epochs, one ``jit``; its seeds are sharded over the devices as
  jaxprop's are, so that both use the same cores;
- jaxprop: ``jp.train_seeds`` with manual and with automatic gradients.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxprop as jp
from benchmarks import numpy_xor, torch_xor
from benchmarks._common import median, timed

LEARNING_RATE = 0.1

#: (n_seeds, epochs, NumPy reference epochs) per size.
SIZES = {"full": (65536, 300, 3000), "quick": (4096, 200, 1000), "smoke": (64, 20, 100)}


def numpy_reference(epochs: int, repeats: int) -> dict:
    """The reference NumPy XOR program (one network): epochs per second."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        numpy_xor.train(epochs)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"epochs": epochs, "median_s": seconds, "epochs_per_s": epochs / seconds}


def _xor_loss(params, x, y):
    a1 = jax.nn.sigmoid(x @ params["w1"] + params["b1"])
    y_hat = jax.nn.sigmoid(a1 @ params["w2"] + params["b2"])
    return 0.5 * jnp.sum((y_hat - y) ** 2)


def make_plain_jax(n_seeds: int, epochs: int, dtype: str):
    """``run() -> params``: jax.grad + vmap + lax.scan, the whole loop jitted."""
    x = jnp.asarray(numpy_xor.XOR_INPUTS, dtype)
    y = jnp.asarray(numpy_xor.XOR_OUTPUTS, dtype)
    params = numpy_xor.ensemble_params(n_seeds, dtype)
    mesh = jax.make_mesh((len(jax.devices()),), ("seeds",))
    sharding = jax.NamedSharding(mesh, jax.P("seeds"))
    params = jax.device_put(params, sharding)
    per_seed_grad = jax.vmap(jax.grad(_xor_loss), in_axes=(0, None, None))

    @jax.jit
    def run(params):
        def epoch(params, _):
            grads = per_seed_grad(params, x, y)
            return jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads), None

        return jax.lax.scan(epoch, params, None, length=epochs)[0]

    return lambda: run(params)


def make_jaxprop(n_seeds: int, epochs: int, dtype: str, grad: str):
    """``run() -> TrainResult``: ``jp.train_seeds`` with the default strategy."""
    x, y = jp.data.xor()
    net = jp.MLP((2, 2, 1), "sigmoid", "sigmoid", "mse", "sum")
    keys = jax.random.split(jax.random.key(0), n_seeds)
    p = numpy_xor.ensemble_params(n_seeds, dtype)
    params = (jp.Layer(p["w1"], p["b1"]), jp.Layer(p["w2"], p["b2"]))
    sgd = optax.sgd(LEARNING_RATE)  # one object: a new one would recompile
    log_every = epochs // 10 if epochs % 10 == 0 else epochs
    return lambda: jp.train_seeds(
        net,
        keys,
        x,
        y,
        sgd,
        epochs,
        params=params,
        grad=grad,
        dtype=dtype,
        log_every=log_every,
    )


def _torch_contenders(n_seeds, epochs, dtype) -> tuple[dict, dict]:
    """PyTorch's contenders that run here, and a note for each that does not."""
    contenders, notes = {}, {}
    if not torch_xor.available():
        notes["torch"] = "PyTorch is not installed (pip install torch==2.13.0)"
        return contenders, notes
    makers = {
        "torch eager autograd": lambda: torch_xor.make_eager(n_seeds, dtype),
        "torch.func vmap(grad)": lambda: torch_xor.make_func(n_seeds, dtype),
        "torch.compile(torch.func)": lambda: torch_xor.make_func(
            n_seeds, dtype, compiled=True
        ),
    }
    for name, make in makers.items():
        try:
            run = make()
            run(2)  # a failing compiler shows here, not mid-measurement
        except Exception as error:  # any failure skips this contender
            notes[name] = f"skipped: {type(error).__name__}: {error}"[:300]
            continue
        contenders[name] = lambda run=run: run(epochs)
    return contenders, notes


def bench_baselines(size: str, repeats: int) -> dict:
    """Seed-epochs per second of every contender, in float32 and float64."""
    n_seeds, epochs, numpy_epochs = SIZES[size]
    numpy_result = numpy_reference(numpy_epochs, repeats)
    print(f"  NumPy reference program: {numpy_result['epochs_per_s']:.3g} epochs/s")
    result = {
        "n_seeds": n_seeds,
        "epochs": epochs,
        "numpy": numpy_result,
        "rows": [],
        "notes": {},
    }
    if torch_xor.available():
        result["torch"] = torch_xor.versions()
    for dtype in ("float32", "float64"):
        contenders = {
            "jaxprop manual": make_jaxprop(n_seeds, epochs, dtype, "manual"),
            "jaxprop autodiff": make_jaxprop(n_seeds, epochs, dtype, "autodiff"),
            "plain JAX grad+vmap+scan": make_plain_jax(n_seeds, epochs, dtype),
        }
        torch_contenders, notes = _torch_contenders(n_seeds, epochs, dtype)
        contenders.update(torch_contenders)
        result["notes"].update({f"{k} ({dtype})": v for k, v in notes.items()})
        for name, (first, times) in timed(contenders, repeats).items():
            rate = n_seeds * epochs / median(times)
            result["rows"].append(
                {
                    "contender": name,
                    "dtype": dtype,
                    "first_call_s": first,
                    "median_s": median(times),
                    "times_s": times,
                    "seed_epochs_per_s": rate,
                    "x_numpy": rate / numpy_result["epochs_per_s"],
                }
            )
        rows = [r for r in result["rows"] if r["dtype"] == dtype]
        best_torch = max(
            (
                r["seed_epochs_per_s"]
                for r in rows
                if r["contender"].startswith("torch")
            ),
            default=None,
        )
        for r in rows:
            r["x_best_torch"] = (
                r["seed_epochs_per_s"] / best_torch if best_torch else None
            )
            print(
                f"  {dtype} {r['contender']:>26}: {r['seed_epochs_per_s']:.3g} "
                f"seed-epochs/s, {r['x_numpy']:.0f}x NumPy"
                + (f", {r['x_best_torch']:.2f}x best torch" if best_torch else "")
            )
    for name, note in result["notes"].items():
        print(f"  {name}: {note}")
    return result


def final_params(n_seeds: int, epochs: int, dtype: str) -> dict[str, dict]:
    """Every contender's final parameters, as NumPy arrays named w1, b1, w2, b2.

    They all start from ``numpy_xor.ensemble_params`` and do the same arithmetic,
    so in float64 they must agree to rounding: the test that the benchmark
    compares the same work.
    """
    out = {}
    for grad in ("manual", "autodiff"):
        layers = make_jaxprop(n_seeds, epochs, dtype, grad)().params
        out[f"jaxprop {grad}"] = {
            "w1": layers[0].w,
            "b1": layers[0].b,
            "w2": layers[1].w,
            "b2": layers[1].b,
        }
    out["plain JAX"] = make_plain_jax(n_seeds, epochs, dtype)()
    if torch_xor.available():
        for name, make in (
            ("torch eager", torch_xor.make_eager),
            ("torch.func", torch_xor.make_func),
        ):
            params = make(n_seeds, dtype)(epochs)
            out[name] = {k: v.detach().numpy() for k, v in params.items()}
    return {
        name: {k: np.asarray(v).reshape(n_seeds, -1) for k, v in params.items()}
        for name, params in out.items()
    }
