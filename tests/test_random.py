"""jaxprop._core.random: the fused Threefry behind DP-SGD's noise gives JAX's own
numbers, bit for bit, computed in one fused loop."""

import math
import re

import jax
import jax.extend.random as jrx
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprop import rules
from jaxprop._core.random import FUSE_MIN_SIZE, FUSED_NAME, fused, threefry2x32


@pytest.fixture(autouse=True)
def _partitionable_threefry():
    """JAX's default, whatever the environment says: the fused keys exist for it."""
    with jax.threefry_partitionable(True):
        yield


SHAPES = [(), (0,), (7,), (2, 3, 4), (64, 100), (1025,)]  # fused from 1024


def test_threefry2x32_is_jaxs_primitive(seed):
    """The written-out hash equals ``threefry2x32_p`` on random keys and
    counters, the extreme words included."""
    rng = np.random.default_rng(seed)
    for _ in range(4):
        key = jnp.asarray(rng.integers(0, 2**32, 2, dtype=np.uint64), jnp.uint32)
        x0, x1 = (
            jnp.asarray(
                np.r_[rng.integers(0, 2**32, 997, dtype=np.uint64), 0, 2**32 - 1],
                jnp.uint32,
            )
            for _ in range(2)
        )
        ours = jax.jit(threefry2x32)(key, x0, x1)
        jaxs = jrx.threefry2x32_p.bind(key[0], key[1], x0, x1)
        for a, b in zip(ours, jaxs, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_hash_check_can_fail():
    """A one-bit change of a counter changes about half the output bits: the
    equality above compares real hashes, not constants."""
    key = jnp.asarray([1, 2], jnp.uint32)
    x = jnp.arange(64, dtype=jnp.uint32)
    a = threefry2x32(key, x, x)[0]
    b = threefry2x32(key, x, x ^ 1)[0]
    flipped = np.unpackbits(np.asarray(a ^ b).view(np.uint8)).mean()
    assert 0.4 < flipped < 0.6


def _draws(key, shape):
    """Every width of bits and every float dtype's uniform and normal."""
    out = {
        f"bits {d.__name__}": jax.random.bits(key, shape, d)
        for d in (jnp.uint8, jnp.uint16, jnp.uint32, jnp.uint64)
    }
    for d in (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64):
        out[f"uniform {d.__name__}"] = jax.random.uniform(key, shape, d)
        out[f"normal {d.__name__}"] = jax.random.normal(key, shape, d)
    return out


@pytest.mark.parametrize("shape", SHAPES)
def test_draws_equal_jax_random(key, shape):
    """bits, uniform and normal from a fused key are ``jax.random``'s for the
    same key, for every width and float dtype, jitted."""
    draws = jax.jit(_draws, static_argnums=1)
    ours, jaxs = draws(fused(key), shape), draws(key, shape)
    for name, value in jaxs.items():
        assert ours[name].dtype == value.dtype, name
        np.testing.assert_array_equal(
            np.asarray(ours[name]), np.asarray(value), err_msg=name
        )


def test_split_fold_in_and_vmap_are_threefrys(key):
    """``fused`` keeps the key data, and its split and fold_in give the keys
    Threefry gives (any shape, any 32-bit data, traced or not); under vmap each
    key draws what it draws alone."""
    k = fused(key)
    data = jax.random.key_data
    for shape in [(), (3,), (2, 3)]:
        np.testing.assert_array_equal(
            data(jax.random.split(k, shape)), data(jax.random.split(key, shape))
        )
    ints = jnp.asarray([0, 1, 7, 2**31, 2**32 - 1], jnp.uint32)
    fold = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(None, 0)))
    np.testing.assert_array_equal(data(fold(k, ints)), data(fold(key, ints)))
    np.testing.assert_array_equal(
        data(jax.random.fold_in(k, 7)), data(jax.random.fold_in(key, 7))
    )
    keys = jax.random.split(key, 5)
    batched = jax.vmap(lambda k: jax.random.normal(k, (64, 100)))(fused(keys))
    for i in range(5):
        np.testing.assert_array_equal(batched[i], jax.random.normal(keys[i], (64, 100)))


def test_other_implementations_pass_through(key):
    """An rbg key (or an already fused one) is left as it is: the shuffle and
    DP-SGD keep working with whatever keys the user trains with."""
    rbg = jax.random.key(3, impl="rbg")
    assert fused(rbg) is rbg
    k = fused(key)
    assert fused(k) is k
    assert str(jax.random.key_impl(k)) == FUSED_NAME


def test_too_many_counters_is_refused_before_anything_runs(key):
    """More than 2**32 numbers would wrap the uint32 counters: refused when
    lowering (2**32 exactly is allowed: indices up to 2**32 - 1)."""
    draw = jax.jit(lambda k: jax.random.bits(fused(k), (2**16, 2**16 + 1)))
    with pytest.raises(ValueError, match="more than 2\\*\\*32"):
        draw.lower(key)
    jax.jit(lambda k: jax.random.bits(fused(k), (2**16, 2**16))).lower(key)


def test_without_partitionable_threefry_keys_are_left_alone(key):
    """The fused hash computes the partitionable stream only; with
    ``jax_threefry_partitionable`` off, ``fused`` returns the key itself, so
    draws stay ``jax.random``'s under either setting."""
    with jax.threefry_partitionable(False):
        assert fused(key) is key
        draw = jax.jit(lambda k: jax.random.normal(fused(k), (5,)))
        np.testing.assert_array_equal(draw(key), jax.random.normal(key, (5,)))


def test_nested_vmap_over_keys(key):
    keys = jax.random.split(key, (2, 3))
    draw = jax.vmap(jax.vmap(lambda k: jax.random.uniform(k, (4096,))))
    np.testing.assert_array_equal(draw(fused(keys)), draw(keys))


def test_a_saved_fused_key_loads_as_the_threefry_key_it_is(tmp_path, key):
    import jaxprop as jp

    path = jp.save(tmp_path / "k.npz", {"k": fused(key)})
    loaded = jp.load(path, like={"k": key})["k"]
    assert str(jax.random.key_impl(loaded)) == "threefry2x32"
    np.testing.assert_array_equal(jax.random.key_data(loaded), jax.random.key_data(key))


def test_dp_sgd_noise_is_jax_random_normal_of_its_step_key(seed):
    """The noise dp_sgd adds at step t to leaf j is jax.random.normal of
    fold_in(fold_in(noise key, t), 1 + j), times σC (sum reduction, no
    clipping): the fused draw changed its speed, not its numbers."""
    import jaxprop as jp

    # W^2 (80 x 64) is drawn fused, the rest (< FUSE_MIN_SIZE) by JAX's hash.
    net = jp.MLP((3, 80, 64), "tanh", "identity", "mse", "sum")
    params = net.init(jax.random.key(seed))
    x = jax.random.normal(jax.random.key(seed + 1), (5, 3))
    y = jax.random.normal(jax.random.key(seed + 2), (5, 64))
    clip, sigma = 1e6, 0.7e-6  # ‖g_i‖ ≪ C: nothing clipped; σC = 0.7
    rule = rules.dp_sgd(clip, sigma)
    state = rule.init(jax.random.key(seed + 3), net, params)
    state = state._replace(count=jnp.asarray(3, jnp.int32))
    _, noisy, _ = jax.jit(lambda *a: rule.value_and_grads(net, *a))(params, state, x, y)
    _, plain = jax.jit(net.value_and_backprop)(params, x, y)
    step = jax.random.fold_in(state.key, 3)
    leaves = jax.tree.leaves(plain)
    for j, (g, n) in enumerate(zip(leaves, jax.tree.leaves(noisy), strict=True)):
        z = jax.random.normal(jax.random.fold_in(step, 1 + j), g.shape, g.dtype)
        np.testing.assert_allclose(n, g + 0.7 * z, rtol=1e-12, atol=1e-12)


def _largest_array_in_a_loop(compiled_text: str) -> int:
    """The most numbers any array a ``while`` loop carries holds (0: no loop)."""
    shapes = [
        dims
        for line in compiled_text.splitlines()
        if " while(" in line
        for dims in re.findall(r"\[([0-9,]+)\]", line.split(" while(")[0])
    ]
    return max((math.prod(int(d) for d in s.split(",")) for s in shapes), default=0)


def test_dp_sgd_step_draws_large_arrays_without_a_rolled_loop(seed):
    """The point of the fused keys: in the compiled DP-SGD step no ``while``
    loop carries an array of FUSE_MIN_SIZE numbers or more (JAX's own hash on
    CPU is such a loop over every parameter array); small draws and the key
    derivations may keep theirs."""
    import jaxprop as jp

    net = jp.MLP((3, 80, 64), "tanh", "identity", "mse", "sum")
    params = net.init(jax.random.key(seed))
    x, y = jnp.ones((5, 3)), jnp.ones((5, 64))
    rule = rules.dp_sgd(1.0, 1.0)
    state = rule.init(jax.random.key(seed + 1), net, params)
    step = jax.jit(lambda *a: rule.value_and_grads(net, *a))
    hlo = step.lower(params, state, x, y).compile().as_text()
    assert _largest_array_in_a_loop(hlo) < FUSE_MIN_SIZE
    # The check can fail: jax.random's own draw of W^2's shape is such a loop.
    plain = jax.jit(lambda k: jax.random.normal(k, (80, 64)))
    text = plain.lower(jax.random.key(seed)).compile().as_text()
    assert _largest_array_in_a_loop(text) >= FUSE_MIN_SIZE
