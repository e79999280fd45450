"""One process of a multi-process ``jp.Trainer`` run, for ``test_distributed.py``.

Usage: ``python tests/_dist_worker.py SPEC`` where SPEC is a JSON object:

- ``devices``: XLA CPU devices of this process (set before JAX starts);
- ``processes``, ``process_id``, ``port``: the ``jax.distributed`` group (on
  127.0.0.1); ``processes`` 1 runs alone, without ``jax.distributed``;
- ``conv``: a small conv net (``jp.Network``) on (8, 6, 1) inputs, not XOR;
- ``light``: full-batch steps and no learning-rate grid (less to compile);
  else minibatches of 2 (the shuffle's loops), two learning rates and an
  evaluation every 100 steps (:func:`problem`);
- ``load``: a checkpoint to resume from (``trainer.load``), or null;
- ``stop``: advance to this step, then ``trainer.save(save, state)`` and stop;
  null: train to the end;
- ``chunks``: advance to the end with ``advance_in_chunks`` in chunks of
  ~1 ms (their lengths agreed between processes) instead of one ``advance``;
- none of ``load``, ``stop``, ``chunks``: ``jp.train_seeds``;
- ``out``: a ``.npz`` file (``{process_id}`` in it is replaced) for the result's
  leaves (or, with ``stop``, the log's and the runs'), NumPy arrays by key path.

Exit status 77: CPU collectives (gloo) are not available in this jaxlib.
"""

import json
import os
import sys

GLOO_MISSING = 77
STEPS = 300


def problem(light: bool, conv: bool = False):
    """(net, keys, x, y, optimizer, steps, options): XOR 2-2-1 over 8 seeds, float64,
    or with ``conv`` a conv net on 8 fixed random examples of shape (6, 1)."""
    import jax
    import numpy as np
    import optax

    import jaxprop as jp

    net = jp.MLP((2, 2, 1), "sigmoid", "sigmoid", "mse", "sum")
    sgd = optax.inject_hyperparams(optax.sgd)(learning_rate=0.5)
    x, y = jp.data.xor(np.float64)
    if conv:
        layers = (jp.layers.Conv(2, 3), jp.layers.MaxPool(2), jp.layers.Flatten())
        net = jp.Network((6, 1), (*layers, jp.layers.Dense(1)), "tanh", "sigmoid")
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(8, 6, 1)), rng.uniform(size=(8, 1))
    keys = jax.random.split(jax.random.key(0), 8)
    options = dict(scheme="uniform01", log_every=10, dtype="float64")
    if not light:
        options |= dict(
            batch_size=2,
            hparams={"learning_rate": np.array([0.5, 2.0])},
            eval_data=(x, y),
            eval_every=100,
        )
    return net, keys, x, y, sgd, STEPS, options


def flat(tree) -> dict:
    """A pytree's leaves as NumPy arrays by key path (PRNG keys as their data);
    every leaf must be this process's whole copy."""
    import jax
    import numpy as np

    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        assert not isinstance(leaf, jax.Array) or leaf.is_fully_addressable
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out[jax.tree_util.keystr(path)] = np.asarray(leaf)
    return out


def run(spec):
    import jax
    import numpy as np

    import jaxprop as jp
    from jaxprop._engine.train import advance_in_chunks

    net, keys, x, y, sgd, steps, options = problem(spec["light"], spec["conv"])
    out = spec["out"].format(process_id=jax.process_index())
    assert len(jax.devices()) == spec["devices"] * spec["processes"], jax.devices()
    if not (spec["load"] or spec["stop"] or spec["chunks"]):
        np.savez(out, **flat(jp.train_seeds(net, keys, x, y, sgd, steps, **options)))
        return
    trainer = jp.Trainer(net, keys, x, y, sgd, steps, **options)
    state = trainer.load(spec["load"]) if spec["load"] else trainer.init()
    stop = spec["stop"] or steps
    if spec["chunks"]:
        calls = []
        state = advance_in_chunks(
            trainer,
            state,
            on_chunk=lambda s, losses: calls.append(np.asarray(losses).shape),
            chunk_seconds=1e-3,
        )
        assert len(calls) > 1 and all(c == trainer.shape for c in calls), calls
    else:
        state = trainer.advance(state, stop - state.step)
    losses = np.asarray(trainer.last_losses(state))
    log = trainer.log(state)
    np.testing.assert_array_equal(losses, np.asarray(log.losses)[..., stop // 10 - 1])
    if spec["stop"]:
        trainer.save(spec["save"], state)
        np.savez(out, **flat({"log": log, "runs": trainer.runs(state)}))
    else:
        np.savez(out, **flat(trainer.result(state)))


def main(spec) -> None:
    kept = [  # the suite's flags (conftest), with this spec's device count
        f
        for f in os.environ.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    os.environ["XLA_FLAGS"] = " ".join(
        [*kept, f"--xla_force_host_platform_device_count={spec['devices']}"]
    )
    import jax

    jax.config.update("jax_enable_x64", True)
    if spec["processes"] == 1:
        return run(spec)
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        # The setting only checks the name; JAX builds gloo's collectives from
        # this jaxlib function when its CPU backend starts.
        from jax._src.lib import _jax

        _jax.make_gloo_tcp_collectives  # noqa: B018
    except Exception as e:  # an older or a trimmed jaxlib
        print(f"gloo unavailable: {e!r}", file=sys.stderr)
        sys.exit(GLOO_MISSING)
    jax.distributed.initialize(
        f"127.0.0.1:{spec['port']}",
        spec["processes"],
        spec["process_id"],
        cluster_detection_method="deactivate",
        initialization_timeout=60,
        shutdown_timeout_seconds=60,
    )
    try:
        run(spec)
    finally:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
