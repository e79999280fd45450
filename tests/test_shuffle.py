"""The per-epoch shuffle (a keyed Feistel bijection): a permutation, uniform, and
the same bits for a run alone, in a batch and split into calls."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import jaxprop as jp
from jaxprop._engine.shuffle import half_bits, permutation, permute, round_keys

SIZES = (1, 2, 3, 7, 100, 1000, 4097, 60000)


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n{n}")
def test_a_bijection_of_range_n(n):
    many = jax.jit(
        jax.vmap(lambda k, e: permutation(k, e, n), in_axes=(None, 0)),
    )(jax.random.key(n), jnp.arange(5))
    assert many.dtype == jnp.int32 and many.shape == (5, n)
    np.testing.assert_array_equal(
        np.sort(np.asarray(many), axis=1), np.arange(n)[None].repeat(5, 0)
    )


def test_the_domain_is_below_4n():
    for n in [*SIZES, 2**31, 2**20 + 1]:
        assert n <= 4 ** half_bits(n) < max(4 * n, 16)


def test_a_batch_of_indices_is_its_slice_of_the_permutation():
    key, n, batch = jax.random.key(3), 1000, 100
    whole = permutation(key, 7, n)
    keys = round_keys(key, 7)
    slices = jax.jit(
        jax.vmap(
            lambda i: permute(
                (i * batch + jnp.arange(batch)).astype(jnp.uint32), n, keys
            )
        )
    )(jnp.arange(n // batch))
    np.testing.assert_array_equal(slices.reshape(-1), whole)


def _uniform_p(counts: np.ndarray) -> float:
    """p-value of Pearson's χ² of the (example, position) counts against uniform."""
    n = counts.shape[0]
    expected = counts.sum() / n**2
    chi2 = ((counts - expected) ** 2 / expected).sum()
    return stats.chi2.sf(chi2, (n - 1) ** 2)


def _looks_fair(shuffle, n: int, epochs: int) -> bool:
    """Positions uniform (χ², p > 1e-3) and not moving in lockstep: example 1
    right after example 0 in 1/(n-1) of the epochs, within 4 standard errors."""
    perms = np.asarray(jax.jit(jax.vmap(shuffle))(jnp.arange(epochs)))
    counts = np.zeros((n, n), int)
    np.add.at(counts, (perms, np.arange(n)[None, :]), 1)
    position = np.argsort(perms, axis=1)  # position[e, a]: where a came in epoch e
    follows = np.mean((position[:, 1] - position[:, 0]) % n == 1)
    q = 1 / (n - 1)
    return bool(
        _uniform_p(counts) > 1e-3
        and abs(follows - q) < 4 * np.sqrt(q * (1 - q) / epochs)
    )


N, EPOCHS = 10, 2000


@pytest.mark.parametrize("seed", range(3))
def test_positions_are_uniform_over_epochs(seed):
    """Deterministic (fixed keys); a fair shuffle fails about 0.1% of keys."""
    key = jax.random.key(seed)
    perms = np.asarray(jax.vmap(lambda e: permutation(key, e, N))(jnp.arange(EPOCHS)))
    # Every example exactly once in every epoch.
    np.testing.assert_array_equal(
        np.sort(perms, axis=1), np.arange(N)[None].repeat(EPOCHS, 0)
    )
    assert _looks_fair(lambda e: permutation(key, e, N), N, EPOCHS)


@pytest.mark.parametrize(
    "biased",
    [
        lambda e: jnp.arange(N),
        # Uniform (example, position) counts; positions move in lockstep.
        lambda e: (jnp.arange(N) + e) % N,
        # Fair 9 epochs in 10, the identity the 10th.
        lambda e: jnp.where(
            e % 10 == 0, jnp.arange(N), permutation(jax.random.key(0), e, N)
        ),
        # Two examples swapped, a 1-in-2 chance of sitting out a position.
        lambda e: (
            permutation(jax.random.key(0), e, N)
            .at[0]
            .set(permutation(jax.random.key(0), e, N)[1])
        ),
    ],
    ids=["identity", "rotation", "identity-1-in-10", "not-a-permutation"],
)
def test_the_statistic_rejects_biased_shuffles(biased):
    assert not _looks_fair(biased, N, EPOCHS)


def test_epochs_and_keys_differ():
    key, n = jax.random.key(5), 100
    a, b = permutation(key, 0, n), permutation(key, 1, n)
    c = permutation(jax.random.key(6), 0, n)
    assert np.any(a != b) and np.any(a != c)
    # A legacy uint32 key gives the same bits as the typed key it wraps.
    raw = jax.random.key_data(key)
    np.testing.assert_array_equal(permutation(raw, 0, n), a)


def test_the_same_bits_alone_and_vmapped():
    keys = jax.random.split(jax.random.key(4), 6)
    batched = jax.jit(jax.vmap(lambda k: permutation(k, 3, 4097)))(keys)
    for s in range(6):
        np.testing.assert_array_equal(permutation(keys[s], 3, 4097), batched[s])


@pytest.mark.slow  # a duplicate of default-suite coverage, or a long run
def test_a_run_alone_equals_it_in_a_batch(key):
    """Training: seed 1 of a batch takes the minibatches it takes alone (and the
    hand-rolled loop of tests/test_train.py checks the batches themselves)."""
    net = jp.MLP((3, 4, 2), "tanh", "identity", "mse", "mean")
    x = jax.random.normal(jax.random.key(1), (23, 3))
    y = jax.random.normal(jax.random.key(2), (23, 2))
    keys = jax.random.split(key, 2)
    kw = dict(batch_size=5, dtype="float32", log_every=1)
    batched = jp.train_seeds(net, keys, x, y, optax.sgd(0.1), 12, **kw)
    alone = jp.train_seeds(net, keys[1:], x, y, optax.sgd(0.1), 12, **kw)
    np.testing.assert_array_equal(alone.losses[0], batched.losses[1])
