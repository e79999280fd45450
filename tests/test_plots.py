"""The PNG plots of ``jaxprop train --out``, drawn from small synthetic arrays."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop as jp
from jaxprop._experiment import Data, plots, regions

LRS = (0.01, 0.1, 10.0)  # the last one diverges in every seed


def assert_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def curves(n_seeds=5, n_blocks=20, n_evals=5):
    """Losses (3, n_seeds, n_blocks): two learning rates train, one diverges at
    once; one seed of lr 0.1 diverges half-way. Eval curves overfit."""
    rng = np.random.default_rng(0)
    steps = 10 * np.arange(1, n_blocks + 1)
    decay = np.exp(-steps / 50.0)
    losses = 0.5 * decay * (1 + 0.2 * rng.random((len(LRS), n_seeds, n_blocks)))
    losses[2] = np.nan
    losses[1, 0, n_blocks // 2 :] = np.nan
    eval_steps = steps[n_blocks // n_evals - 1 :: n_blocks // n_evals]
    eval_loss = 0.3 + rng.random((len(LRS), n_seeds, len(eval_steps))) * 0.1
    eval_accuracy = rng.random((len(LRS), n_seeds, len(eval_steps)))
    return steps, losses, eval_steps, eval_loss, eval_accuracy


def test_loss_curves_without_eval(tmp_path):
    steps, losses, *_ = curves()
    fig = plots._loss_figure(steps, losses, LRS)
    assert len(fig.axes) == 1
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any("5/5 diverged" in s for s in labels)
    assert any("1 diverged" in s for s in labels)
    assert fig.axes[0].get_yscale() == "linear"
    assert_png(plots.loss_curves(tmp_path / "loss.png", steps, losses, LRS))


def test_loss_curves_with_eval(tmp_path):
    steps, losses, eval_steps, eval_loss, eval_accuracy = curves()
    losses = losses * np.exp(-steps / 10.0)  # spans > 100x: log scale
    fig = plots._loss_figure(steps, losses, LRS, eval_steps, eval_loss, eval_accuracy)
    train, held_out, accuracy = fig.axes
    assert held_out.get_ylabel() == "held-out loss"
    assert accuracy.get_ylabel() == "held-out accuracy"
    assert train.get_yscale() == held_out.get_yscale() == "log"
    path = plots.loss_curves(
        tmp_path / "loss.png", steps, losses, LRS, eval_steps, eval_loss, eval_accuracy
    )
    assert_png(path)
    # Held-out loss only: two panels.
    fig = plots._loss_figure(steps, losses, LRS, eval_steps, eval_loss)
    assert len(fig.axes) == 2


def test_loss_curves_all_diverged(tmp_path):
    steps, losses, eval_steps, eval_loss, eval_accuracy = curves()
    nan = np.full_like(losses, np.nan)
    path = plots.loss_curves(
        tmp_path / "loss.png",
        steps,
        nan,
        LRS,
        eval_steps,
        np.full_like(eval_loss, np.nan),
        np.full_like(eval_accuracy, np.nan),
    )
    assert_png(path)


def test_histogram(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.random((len(LRS), 8))
    values[1, :3] = np.nan
    values[2] = np.nan
    fig = plots._histogram_figure(values, LRS, "eval accuracy")
    assert len(fig.axes) == len(LRS)
    for ax in fig.axes:
        ticks = ax.get_yticks()
        assert np.all(ticks == np.round(ticks))
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles == [
        "lr 0.01: 8 seeds, 0 diverged",
        "lr 0.1: 8 seeds, 3 diverged",
        "lr 10: 8 seeds, 8 diverged",
    ]
    assert "all 8 diverged" in [t.get_text() for t in fig.axes[2].texts]
    colors = {ax.patches[0].get_facecolor() for ax in fig.axes[:2]}
    assert len(colors) == 2  # one colour per learning rate
    assert_png(plots.histogram(tmp_path / "h.png", values, LRS, "eval accuracy"))


def test_histogram_all_diverged(tmp_path):
    values = np.full((2, 4), np.nan)
    assert_png(plots.histogram(tmp_path / "h.png", values, (0.1, 1.0), "loss"))


@pytest.fixture(scope="module")
def xor_net():
    net = jp.MLP((2, 3, 1), "tanh", "sigmoid", "mse")
    params = jax.vmap(lambda k: net.init(k))(jax.random.split(jax.random.key(0), 4))
    return net, params


def test_decision_regions_one_output(tmp_path, xor_net):
    net, params = xor_net
    x, y = jp.data.xor()
    data = Data(x, y, None, None, True)  # y: (4, 1) 0/1 targets
    fig = regions._regions_figure(net, params, data, 0.1)
    assert "lr 0.1" in fig.get_suptitle() and "seeds 0–3" in fig.get_suptitle()
    *panels, colorbar = fig.axes
    assert len(panels) == 4
    assert colorbar.get_ylabel() == "network output"
    assert colorbar.get_ylim() == (0.0, 1.0)  # the sigmoid's range
    assert panels[0].collections[-1].get_sizes()[0] >= 100  # XOR's points show
    assert_png(regions.decision_regions(tmp_path / "r.png", net, params, data, 0.1))


def test_decision_regions_three_classes(tmp_path):
    net = jp.MLP((2, 4, 3), "tanh", "identity", "softmax_cross_entropy")
    params = jax.vmap(lambda k: net.init(k))(jax.random.split(jax.random.key(1), 2))
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 3000)
    x = rng.normal(size=(3000, 2)) + 3 * np.eye(3, 2)[labels]
    data = Data(x, labels, None, None, True)
    fig = regions._regions_figure(net, params, data, 0.5, n_seeds=4)
    assert len(fig.axes) == 2  # as many panels as seeds, no colour bar
    assert "lr 0.5" in fig.get_suptitle() and "2000 of 3000" in fig.get_suptitle()
    assert len(fig.axes[0].collections[-1].get_offsets()) == 2000
    assert [t.get_text() for t in fig.legends[0].texts] == [
        "class 0",
        "class 1",
        "class 2",
    ]
    path = regions.decision_regions(tmp_path / "r.png", net, params, data, 0.5)
    assert_png(path)


def test_decision_regions_diverged_seed(tmp_path, xor_net):
    net, params = xor_net
    params = jax.tree.map(lambda l: l.at[1].set(jnp.nan), params)
    x, y = jp.data.xor(np.float64)
    data = Data(x, y[:, 0].astype(int), None, None, True)  # labels (4,)
    path = regions.decision_regions(tmp_path / "r.png", net, params, data, 1.0, 2)
    assert_png(path)


def report(ratios, numeric=True):
    rows = tuple(
        jp.GradCheckRow(
            l,
            p,
            (2, 2),
            1e-12,
            1e-12,
            1e-9 if numeric else np.nan,
            1e-9 if numeric else np.nan,
            a <= 1 and n <= 1,
            a,
            n if numeric else np.nan,
        )
        for (l, p), (a, n) in zip(
            [(1, "w"), (1, "b"), (2, "w"), (2, "b")], ratios, strict=True
        )
    )
    return jp.GradCheckReport(rows, "float64", 1e-10, 1e-6, all(r.passed for r in rows))


def test_gradcheck_passed(tmp_path):
    rep = report([(0.0, 1e-3), (1e-2, 0.0), (0.3, 0.5), (1e-5, 1e-4)])
    fig = plots._gradcheck_figure(rep)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    assert any(list(line.get_ydata()) == [1, 1] for line in ax.get_lines())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["W¹", "b¹", "W²", "b²"]
    assert "PASSED" in ax.get_title() and "float64" in ax.get_title()
    assert_png(plots.gradcheck(tmp_path / "g.png", rep))


def test_gradcheck_failed(tmp_path):
    rep = report([(0.0, 1e-3), (50.0, 0.2), (0.3, 0.5), (1e-5, 1e-4)], numeric=False)
    fig = plots._gradcheck_figure(rep)
    (ax,) = fig.axes
    assert "FAILED" in ax.get_title()
    labels = ax.get_legend_handles_labels()[1]
    assert "over tolerance" in labels
    assert "vs finite differences (not run)" in labels
    assert ax.get_ylim()[1] > 50
    assert_png(plots.gradcheck(tmp_path / "g.png", rep))


def test_gradcheck_real_report(tmp_path, xor_net):
    net, params = xor_net
    x, y = jp.data.xor(np.float64)
    rep = jp.check_grads(net, jax.tree.map(lambda l: l[0], params), x, y)
    fig = plots._gradcheck_figure(rep)
    assert len(fig.axes[0].get_xticklabels()) == 4
    assert_png(plots.gradcheck(tmp_path / "g.png", rep))


def test_loss_axis_fits_the_bands_not_values_logged_before_divergence():
    steps = np.arange(1, 21) * 10
    losses = np.tile(np.linspace(1.0, 0.1, 20), (1, 4, 1))
    losses[0, 3, 5] = 1e37  # logged just before that seed diverged
    losses[0, 3, 6:] = np.nan
    fig = plots._loss_figure(steps, losses, [0.1])
    assert fig.axes[0].get_ylim()[1] < 10


def test_regions_of_diverged_seeds_say_so():
    net = jp.MLP((2, 3, 1), "tanh", "sigmoid", "mse")
    params = jax.vmap(lambda k: net.init(k))(jax.random.split(jax.random.key(0), 4))
    x = np.random.default_rng(0).normal(size=(20, 2)).astype("float32")
    data = Data(x, (x[:, :1] > 0).astype("float32"), None, None, True)
    fig = regions._regions_figure(
        net, params, data, 0.1, diverged=np.array([False, True, False, False])
    )
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert "diverged" in texts


def test_alignment_has_a_row_of_panels_per_learning_rate(tmp_path):
    rng = np.random.default_rng(2)
    steps = np.array([50, 100, 150])
    lrs = (0.01, 0.1)
    grad = rng.uniform(10, 80, (len(lrs), 4, 2, len(steps)))  # (n_lr, seeds, L, n)
    delta = grad + 5
    delta[1] = np.nan  # every seed of lr 0.1 diverged before δ was measured
    angles = {"grad": grad, "delta": delta, "feedback": np.full_like(grad, np.nan)}
    fig = plots._alignment_figure(steps, angles, lrs, "fa")
    assert len(fig.axes) == 4  # 2 learning rates × 2 measures (no feedback: DFA)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert [t.split(":")[0] for t in titles] == ["lr 0.01"] * 2 + ["lr 0.1"] * 2
    for i in range(len(lrs)):  # each lr's own medians, one line per layer
        ax = fig.axes[2 * i]
        medians = [line.get_ydata() for line in ax.lines if line.get_label()[0] == "l"]
        np.testing.assert_allclose(medians, np.median(grad[i], 0))
    assert "all 4 diverged" in [t.get_text() for t in fig.axes[3].texts]
    assert_png(plots.alignment_curves(tmp_path / "a.png", steps, angles, lrs, "fa"))
