"""The loop's stretch-and-redo logic on its own, with a fake step (no network):
what a diverged run records, where it is frozen, and what the other runs keep."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprop._engine.loop import RunState, Stretch, Stretcher, run_stretch

EVERY, G = 3, 4  # steps per block, blocks per stretch
NEVER = 10**6


def fake_steps(run, t0, n):
    """n blocks of EVERY steps of a run whose parameter w counts its steps:
    step t's loss is w, then w + 1, or NaN from step ``t_bad`` on (the run's
    second parameter): the loss turns NaN the step after. As ``_steps``:
    (run, (means (G,), bad (G,)))."""
    (w, t_bad), opt_state, rule_state = run
    means = jnp.full((G,), jnp.nan)
    bads = jnp.full((G,), EVERY, jnp.int32)
    for g in range(G):
        total, bad = jnp.zeros(()), jnp.int32(EVERY)
        w_block = w
        for i in range(EVERY):
            t = t0 + g * EVERY + i
            total = total + w_block
            bad = jnp.where((bad == EVERY) & ~jnp.isfinite(w_block), i, bad)
            w_block = jnp.where(t >= t_bad, jnp.nan, w_block + 1)
        taken = g < n
        w = jnp.where(taken, w_block, w)
        means = means.at[g].set(jnp.where(taken, total / EVERY, jnp.nan))
        bads = bads.at[g].set(jnp.where(taken, bad, EVERY))
    return ((w, t_bad), opt_state, rule_state), (means, bads)


def expected(w0, t0, m, t_bad, diverged=False):
    """A check after every block, by hand: (w, diverged, diverged_at, rows)."""
    if diverged:
        return w0, True, -2, [np.nan] * m
    rows, w = [], w0
    for g in range(m):
        start = t0 + g * EVERY
        if t_bad < start + EVERY:  # this block diverges: frozen at its start
            first_bad = min(max(t_bad, start) + 1, start + EVERY - 1)
            return w, True, first_bad, rows + [np.nan] * (m - g)
        rows.append(np.mean([w + i for i in range(EVERY)]))
        w += EVERY
    return w, False, -1, rows


def state(w0, t_bad, diverged=False):
    """A run's state before the stretch (already diverged: diverged_at -2)."""
    params = (jnp.float64(w0), jnp.float64(t_bad))
    return RunState(
        params,
        (),
        jax.random.key(0),
        jnp.array(diverged),
        jnp.int32(-2 if diverged else -1),
    )


def check(runs, t0, m, axis_name):
    """run_stretch over every run (vmapped) against a check after every block."""
    runs_given = runs
    runs = jax.tree.map(lambda *l: jnp.stack(l), *[state(*r) for r in runs])
    st = Stretcher(fake_steps, G, EVERY, jnp.float64, axis_name)
    at = Stretch(jnp.int32(t0), jnp.int32(m))
    over = jax.vmap(lambda s: run_stretch(st, s, at), axis_name=axis_name)
    after, rows = jax.jit(over)(runs)
    for r, (w0, t_bad, *before) in enumerate(runs_given):
        w, diverged, at_step, logged = expected(w0, t0, m, t_bad, *before)
        assert float(after.params[0][r]) == w, r
        assert bool(after.diverged[r]) == diverged, r
        assert int(after.diverged_at[r]) == at_step, r
        np.testing.assert_array_equal(np.asarray(rows[r, :m]), logged, err_msg=str(r))
    return after, rows


@pytest.mark.parametrize("axis_name", ["runs", None], ids=["psum", "per run"])
@pytest.mark.parametrize("m", [G, 2], ids=["whole stretch", "last stretch"])
def test_a_stretch_that_no_run_diverges_in_keeps_its_unchecked_outcome(m, axis_name):
    after, rows = check([(0.0, NEVER), (5.0, NEVER)], 30, m, axis_name)
    np.testing.assert_array_equal(after.params[0], [m * EVERY, 5 + m * EVERY])
    assert np.isnan(rows[:, m:]).all()  # rows past the stretch: not written


@pytest.mark.parametrize("axis_name", ["runs", None], ids=["psum", "per run"])
@pytest.mark.parametrize("m", [G, 2], ids=["whole stretch", "last stretch"])
def test_diverged_runs_record_what_a_check_after_every_block_gives(m, axis_name):
    t0 = 30  # blocks from steps 30, 33, 36, 39
    runs = [
        (0.0, NEVER),  # holds its unchecked outcome while others are redone
        (0.0, 30),  # NaN loss at step 31: frozen at the stretch's start
        (2.0, 35),  # the second block's last step: only its params are NaN
        (1.0, 37),  # the third block (past a last stretch of 2: no divergence)
        (0.0, 29),  # NaN after the step before the stretch: a NaN loss at 31
        (4.0, 31, True),  # diverged before: frozen, NaN rows, diverged_at kept
    ]
    after, rows = check(runs, t0, m, axis_name)
    # Spelled out for two of them, as the log shows it.
    np.testing.assert_array_equal(rows[1, :m], [np.nan] * m)
    if m == G:
        np.testing.assert_array_equal(rows[3, :m], [2.0, 5.0, np.nan, np.nan])
        assert int(after.diverged_at[3]) == 38 and float(after.params[0][3]) == 7


def test_the_fake_step_is_the_reference_without_divergence():
    """The oracle's own check: the fake step's block means by hand."""
    run = ((jnp.float64(0), jnp.float64(NEVER)), (), ())
    (w, _), _, _ = fake_steps(run, 0, 2)[0]
    means, bad = fake_steps(run, 0, 2)[1]
    assert float(w) == 2 * EVERY
    np.testing.assert_array_equal(means, [1.0, 4.0, np.nan, np.nan])
    np.testing.assert_array_equal(bad, [EVERY] * G)
