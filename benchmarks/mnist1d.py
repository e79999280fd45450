"""The MNIST-1D paper's MLP recipe over many seeds: wall time and test accuracy.

40-100-100-10 ReLU, softmax cross-entropy, Adam 1e-2, batch 100, 6000 steps, float32
(Greydanus & Kobak), trained over 8 and 32 seeds at once by ``jp.train_seeds``
(manual gradients; automatic ones at full size) and by two plain JAX loops
(``jax.grad`` + ``vmap`` over seeds + ``lax.scan`` over steps, seeds sharded over
the devices as jaxprop shards them, the same initial parameters): one drawing
each minibatch with replacement (``randint``), the cheapest sampler, and one
shuffling each epoch with ``jax.random.permutation`` (a sort of n keys), the
way jaxprop shuffled before its Feistel permutation. The issue's targets: ≤ 20 s
for 32 seeds on 2 CPU cores; jaxprop ≤ 1.0× the plain loop with replacement.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxprop as jp
from benchmarks._common import median, timed

#: (seed counts, steps) per size.
SIZES = {"full": ((8, 32), 6000), "quick": ((8, 32), 600), "smoke": ((2,), 20)}
BATCH = 100


def _plain_jax(net, params, data, steps, sampler):
    """``run() -> params``: the recipe as a plain jitted JAX loop over seeds."""
    x, y = jnp.asarray(data.x), jnp.asarray(data.y)
    n = x.shape[0]
    n_batches = n // BATCH
    mesh = jax.sharding.Mesh(jax.devices(), ("seeds",))  # Auto: x[idx] needs no spec
    sharding = jax.NamedSharding(mesh, jax.P("seeds"))
    n_seeds = jax.tree.leaves(params)[0].shape[0]
    params = jax.device_put(params, sharding)
    keys = jax.device_put(jax.random.split(jax.random.key(1), n_seeds), sharding)
    adam = optax.adam(1e-2)

    def loss(params, xb, yb):
        a = xb
        for layer in params[:-1]:
            a = jax.nn.relu(a @ layer.w + layer.b)
        logits = a @ params[-1].w + params[-1].b
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    def one_run(params, key):
        def step(carry, t):
            params, opt_state, perm = carry
            if sampler == "replacement":
                idx = jax.random.randint(jax.random.fold_in(key, t), (BATCH,), 0, n)
            else:  # a fresh permutation at each epoch's first step
                i = t % n_batches
                perm = jax.lax.cond(
                    i == 0,
                    lambda: jax.random.permutation(
                        jax.random.fold_in(key, t // n_batches), n
                    ),
                    lambda: perm,
                )
                idx = jax.lax.dynamic_slice_in_dim(perm, i * BATCH, BATCH)
            grads = jax.grad(loss)(params, x[idx], y[idx])
            updates, opt_state = adam.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, perm), None

        carry = (params, adam.init(params), jnp.arange(n))
        return jax.lax.scan(step, carry, jnp.arange(steps))[0][0]

    run = jax.jit(jax.vmap(one_run))
    return lambda: run(params, keys)


def bench_mnist1d(size: str, repeats: int) -> dict:
    """The MNIST-1D recipe over 8 and 32 seeds: jaxprop and plain JAX, same run."""
    seed_counts, steps = SIZES[size]
    data = jp.data.mnist1d()
    net = jp.MLP(
        (40, 100, 100, 10), "relu", "identity", "softmax_cross_entropy", "mean"
    )
    adam = optax.adam(1e-2)
    grads = ("manual", "autodiff") if size == "full" else ("manual",)
    rows = []
    for n_seeds in seed_counts:
        keys = jax.random.split(jax.random.key(0), n_seeds)
        last = {}  # each jaxprop contender's latest result, for the accuracies

        def contender(grad, keys=keys, last=last):
            def run():
                last[grad] = jp.train_seeds(
                    net,
                    keys,
                    data.x,
                    data.y,
                    adam,
                    steps,
                    batch_size=BATCH,
                    grad=grad,
                    dtype="float32",
                    log_every=steps // 10 if steps % 10 == 0 else 1,
                    eval_data=(data.x_test, data.y_test),
                )
                return last[grad]

            return run

        params = jax.vmap(lambda k: net.init(jax.random.split(k)[0], dtype="float32"))(
            keys
        )
        contenders = {g: contender(g) for g in grads}
        for sampler in ("replacement", "shuffled"):
            contenders[f"plain JAX, {sampler}"] = _plain_jax(
                net, params, data, steps, sampler
            )
        baseline = None
        for name, (first, times) in timed(contenders, repeats).items():
            seconds = median(times)
            row = {
                "seeds": n_seeds,
                "contender": name,
                "first_call_s": first,
                "median_s": seconds,
                "times_s": times,
            }
            if name in last:
                accuracy = jp.summarize(np.asarray(last[name].eval_accuracy[:, -1]))
                row["test_accuracy"] = accuracy._asdict()
            rows.append(row)
        baseline = next(
            r["median_s"]
            for r in rows
            if r["seeds"] == n_seeds and r["contender"] == "plain JAX, replacement"
        )
        for row in rows:
            if row["seeds"] == n_seeds:
                row["vs_replacement"] = row["median_s"] / baseline
                acc = row.get("test_accuracy")
                print(
                    f"  {n_seeds:>3} seeds, {row['contender']:>24}: "
                    f"{row['median_s']:.2f} s steady ({row['first_call_s']:.1f} s "
                    f"first call), {row['vs_replacement']:.3f}× with replacement"
                    + (f"; test accuracy {100 * acc['mean']:.1f}%" if acc else "")
                )
    return {
        "seed_counts": list(seed_counts),
        "steps": steps,
        "batch_size": BATCH,
        "rows": rows,
    }
