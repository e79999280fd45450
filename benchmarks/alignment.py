"""What measuring alignment during training costs: ``alignment_every`` on vs off.

``jp.train_seeds`` of the same runs with and without ``alignment_every``, per
rule, the two timed side by side (interleaved repeats, compile excluded: the
first call of each is apart), at two settings:

- **readme**: the rules example of docs/rules.md: two moons (256 training examples,
  1000 held out), 2-32-2 tanh/sigmoid, mse, 16 seeds, ``optax.sgd(1.0)``,
  1000 steps, ``alignment_every=500``, held-out evaluation; with that page's
  ``log_every=10`` and with the default ``log_every`` (1 here), each with
  and without the held-out data (without it, the runs without alignment are
  checked for divergence once per stretch of ``CHECK_STEPS`` steps, those
  with it after every block).
- **rules.py**: ``scripts/rules.py``'s settings: MNIST-1D (3500 training
  examples, the 1000 test ones evaluated), 40-100-100-10 ReLU, softmax
  cross-entropy, batch 100, Adam over the learning rates {1e-3, 3e-3, 1e-2}
  (one ``hparams`` grid), float32, the ``log_every=60`` and
  ``alignment_every=600`` the script derives from its 6000 steps; fewer seeds
  and steps than its 64 × 6000 (``SIZES``), so as many steps per measure.

The ratio is the median time with alignment over the median time without;
target (issue 24): at most 1.15.
"""

from __future__ import annotations

import jax
import numpy as np
import optax

import jaxprop as jp
from benchmarks._common import median, timed

TARGET = 1.15
#: The rules of docs/rules.md's example, and what scripts/rules.py adds.
RULES = {
    "backprop": jp.rules.backprop(),
    "fa": jp.rules.feedback_alignment(),
    "dfa": jp.rules.direct_feedback_alignment(),
    "sign": jp.rules.sign_symmetry(),
}
ADAM_LRS = (1e-3, 3e-3, 1e-2)

SIZES = {
    "full": {
        "readme_steps": 1000,
        "readme_rules": tuple(RULES),
        "mnist_seeds": 16,
        "mnist_steps": 1200,
        "mnist_every": (60, 600),
        "mnist_rules": ("backprop", "fa"),
    },
    "quick": {
        "readme_steps": 1000,
        "readme_rules": ("backprop", "fa"),
        "mnist_seeds": 4,
        "mnist_steps": 1200,
        "mnist_every": (60, 600),
        "mnist_rules": ("backprop", "fa"),
    },
    "smoke": {
        "readme_steps": 100,
        "readme_rules": ("fa",),
        "mnist_seeds": 1,
        "mnist_steps": 40,
        "mnist_every": (10, 20),
        "mnist_rules": ("fa",),
    },
}

_SGD = optax.sgd(1.0)  # one object each: a new one would be a new program
_ADAM = optax.inject_hyperparams(optax.adam)(learning_rate=ADAM_LRS[0])


def readme_setting(steps: int, log_every: int | None, held_out: bool = True):
    """``run(rule, alignment_every) -> TrainResult`` of docs/rules.md's example,
    and its ``alignment_every``."""
    moons = jp.data.two_moons(jax.random.key(0), 256, n_test=1000)
    onehot = lambda labels: jax.nn.one_hot(labels, 2)  # noqa: E731
    net = jp.MLP((2, 32, 2), "tanh", "sigmoid", "mse")
    keys = jax.random.split(jax.random.key(1), 16)
    x, y = moons.x, onehot(moons.y)
    eval_data = (moons.x_test, onehot(moons.y_test)) if held_out else None

    def run(rule, alignment_every):
        return jp.train_seeds(
            net,
            keys,
            x,
            y,
            _SGD,
            steps,
            rule=rule,
            alignment_every=alignment_every,
            log_every=log_every,
            eval_data=eval_data,
        )

    return run, steps // 2


def rules_setting(n_seeds: int, steps: int, log_every: int):
    """``run(rule, alignment_every) -> TrainResult`` at scripts/rules.py's
    settings (its "relu" net)."""
    full = jp.data.mnist1d()
    train = jp.data.split(np.asarray(full.x), np.asarray(full.y), 500)
    net = jp.MLP(
        (40, 100, 100, 10), "relu", "identity", "softmax_cross_entropy", "mean"
    )
    keys = jax.random.split(jax.random.key(0), n_seeds)

    def run(rule, alignment_every):
        return jp.train_seeds(
            net,
            keys,
            train.x,
            train.y,
            _ADAM,
            steps,
            rule=rule,
            hparams={"learning_rate": np.asarray(ADAM_LRS)},
            batch_size=100,
            eval_data=(full.x_test, full.y_test),
            alignment_every=alignment_every,
            log_every=log_every,
            dtype="float32",
        )

    return run


def measure(setting: str, run, align_every: int, names, repeats: int) -> list[dict]:
    """Rows of (rule, off and on times, ratio) of one setting, timed together."""
    contenders = {}
    for name in names:
        rule = RULES[name]
        contenders[(name, "off")] = lambda rule=rule: run(rule, None)
        contenders[(name, "on")] = lambda rule=rule: run(rule, align_every)
    results = timed(contenders, repeats)
    rows = []
    for name in names:
        (first_off, off), (first_on, on) = results[name, "off"], results[name, "on"]
        ratio = median(on) / median(off)
        rows.append(
            {
                "setting": setting,
                "rule": name,
                "alignment_every": align_every,
                "off_s": median(off),
                "on_s": median(on),
                "ratio": ratio,
                "met": ratio <= TARGET,
                "first_call_off_s": first_off,
                "first_call_on_s": first_on,
                "times_off_s": off,
                "times_on_s": on,
            }
        )
        print(
            f"  {setting}, {name}: off {median(off):.3f} s, on {median(on):.3f} s, "
            f"on/off {ratio:.3f} (target <= {TARGET}: "
            f"{'met' if ratio <= TARGET else 'MISSED'})"
        )
    return rows


def bench_alignment(size: str, repeats: int) -> dict:
    """The ``alignment`` study: training time with alignment on over off."""
    s = SIZES[size]
    rows = []
    readme = (
        ("readme, log_every=10", 10, True),
        ("readme, default log_every", None, True),
        ("readme, log_every=10, no held-out data", 10, False),
        ("readme, default log_every, no held-out data", None, False),
    )
    for label, log_every, held_out in readme:
        run, every = readme_setting(s["readme_steps"], log_every, held_out)
        rows += measure(label, run, every, s["readme_rules"], repeats)
        jax.clear_caches()
    log_every, every = s["mnist_every"]
    run = rules_setting(s["mnist_seeds"], s["mnist_steps"], log_every)
    label = (
        f"rules.py, {s['mnist_seeds']} seeds x 3 lrs, {s['mnist_steps']} steps, "
        f"log_every={log_every}"
    )
    rows += measure(label, run, every, s["mnist_rules"], repeats)
    return {
        "target": TARGET,
        "readme_steps": s["readme_steps"],
        "mnist_seeds": s["mnist_seeds"],
        "mnist_steps": s["mnist_steps"],
        "mnist_log_every": log_every,
        "devices": len(jax.devices()),
        "rows": rows,
        "met": all(r["met"] for r in rows),
    }
