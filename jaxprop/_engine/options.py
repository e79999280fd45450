"""Every option of a training call as one checked value, :class:`Options`.

``train``, ``Trainer`` and ``train_seeds`` take their options as keywords
whose names and types are written once, in the ``TypedDict``s
:class:`RunOptions` (``train``'s) and :class:`SweepOptions` (a sweep's: those
and more), and build an :class:`Options` from them with :func:`run_options` or
:func:`sweep_options`: each constraint on an option is checked there, once,
before anything compiles, and everything downstream reads the checked value.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._core.activations import default_scheme
from .._core.params import Params, check_float_dtype, check_scheme, typed_keys
from .._inputs import check_inputs, check_targets
from .._network import check_net, check_params
from .._validate import choice, positive_int
from ..curvature.diagnostics import check_sharpness
from ..data import Dataset, check_dataset
from ..rules import Rule, autodiff, backprop
from ..rules.delta_rules import check_rule
from ..rules.pairing import warn_unpaired
from .grid import check_hparams, count_runs
from .layout import STRATEGIES, spans_processes
from .loop import TrainData, log_rows
from .steps import _Config

Array = jax.Array

GRADS = ("manual", "autodiff")


class RunOptions(TypedDict, total=False):
    """The options of one run (``train``'s keywords); see :func:`jaxprop.train`."""

    grad: str | None
    rule: Rule | None
    batch_size: int | None
    eval_data: tuple | None
    eval_every: int | None
    alignment_every: int | None
    diagnostics_every: int | None
    sharpness: str | None
    sharpness_iters: int
    log_every: int | None


class SweepOptions(RunOptions, total=False):
    """The options of many runs (``Trainer``'s and ``train_seeds``' keywords):
    one run's and these; see :func:`jaxprop.train_seeds`."""

    scheme: str | None
    params: Params | None
    hparams: Mapping[str, Any] | None
    strategy: str
    chunk_size: int | None
    dtype: Any
    devices: Sequence[jax.Device] | None


@dataclasses.dataclass(frozen=True, eq=False)
class Options:
    """Every option of a training call, checked (:func:`run_options`,
    :func:`sweep_options`) and resolved: the rule (``grad`` names one),
    ``log_every`` (chosen when not given), the data as arrays of the
    parameters' dtype, the devices.

    Attributes:
      config: the static (hashable) part that the compiled loop reads: the
        net, optimizer, steps, rule, batch_size, log_every, eval_every,
        alignment_every, diagnostics_every, sharpness and sharpness_iters, as
        for ``train``.
      data: the training and held-out arrays.
      dtype: the parameters' dtype, by name.
      log_every_given: whether the caller chose ``log_every``.
      n_seeds, keys, params, scheme, probe, probe_rule: a sweep's seeds, their
        (n_seeds,) PRNG keys, the stacked initial params given (or None), the
        init scheme; one run's params and rule state as shapes.
      hparams, n_hparams: the checked grid, {qualified name: (n_hparams,)
        values}, and its length (0 without a grid).
      strategy, chunk_size: as given (``"chunked"`` when a chunk_size is).
      devices: the devices the runs are laid over.
    """

    config: _Config
    data: TrainData
    dtype: str
    log_every_given: bool = True
    n_seeds: int = 1
    keys: Any = None
    params: Any = None
    scheme: str | None = None
    probe: Any = None
    probe_rule: Any = None
    hparams: Mapping[str, Array] = dataclasses.field(default_factory=dict)
    n_hparams: int = 0
    strategy: str = "auto"
    chunk_size: int | None = None
    devices: Sequence = ()

    @property
    def n_runs(self) -> int:
        return count_runs(self.n_seeds, self.n_hparams)

    @property
    def n_examples(self) -> int:
        return self.data.x.shape[0]

    @property
    def n_eval(self) -> int:
        """Held-out examples evaluated per run (0 without ``eval_data``)."""
        return 0 if self.data.x_eval is None else self.data.x_eval.shape[0]

    @property
    def itemsize(self) -> int:
        """Bytes of a parameter."""
        return jnp.dtype(self.dtype).itemsize


def run_options(net, params, x, y, optimizer, steps, given: dict) -> Options:
    """``train``'s options checked: ``given``, its keywords (:class:`RunOptions`)."""
    _check_names(given, RunOptions, "train")
    dtype = check_params(check_net(net), params)
    options = Options(**_checked_run(net, optimizer, steps, dtype, (x, y), given))
    warn_unpaired(options.config.rule, optimizer)
    return _with_log_every(options)


def sweep_options(
    net, keys, x, y, optimizer, steps, given: dict, caller: str = "Trainer"
) -> Options:
    """A sweep's options checked: ``given``, the keywords of ``caller``
    (:class:`SweepOptions`), for one run per key (and grid point)."""
    _check_names(given, SweepOptions, caller)
    n_seeds = _check_keys(keys)
    keys = typed_keys(keys)
    check_net(net)
    _check_optimizer(optimizer)
    scheme = given.get("scheme")
    scheme = check_scheme(default_scheme(net.activation) if scheme is None else scheme)
    params, probe, dtype = _initial_params(net, given, n_seeds, scheme)
    fields = _checked_run(net, optimizer, steps, dtype, (x, y), given)
    rule = fields["config"].rule
    probe_rule = jax.eval_shape(
        lambda k, p: rule.init(k, net, p), jax.random.key(0), probe
    )
    opt_state = jax.eval_shape(optimizer.init, probe)
    hparams, n_hparams = check_hparams(
        given.get("hparams"), rule, optimizer, opt_state, probe_rule
    )
    warn_unpaired(rule, optimizer, hparams)
    devices = _check_devices(given.get("devices"))
    options = Options(
        **fields,
        n_seeds=n_seeds,
        keys=keys,
        params=params,
        scheme=scheme,
        probe=probe,
        probe_rule=probe_rule,
        hparams=hparams,
        n_hparams=n_hparams,
    )
    options = _with_log_every(options)
    if not spans_processes(devices):
        # Fewer runs than devices: no device idles on padding (one seed runs
        # as one program on one device, not a padded program split across
        # two). Across processes every process keeps its devices: each runs
        # the same program.
        devices = devices[: options.n_runs]
    strategy, chunk_size = _check_strategy(
        given.get("strategy", "auto"), given.get("chunk_size")
    )
    return dataclasses.replace(
        options, devices=tuple(devices), strategy=strategy, chunk_size=chunk_size
    )


def _check_names(given: dict, options: type, caller: str) -> None:
    """A TypeError for a keyword that is none of ``options``' names."""
    names = list(options.__annotations__)
    unknown = [name for name in given if name not in names]
    if unknown:
        also = " and progress" if caller == "train_seeds" else ""
        raise TypeError(
            f"{caller}() got an unexpected keyword argument {unknown[0]!r}; "
            f"its options are {names}{also}."
        )


def _initial_params(net, given: dict, n_seeds: int, scheme: str):
    """(stacked params given or None, one run's params (shapes), their dtype)."""
    params = given.get("params")
    if params is not None:
        leading = {np.shape(l)[:1] for l in jax.tree.leaves(params)}
        if leading != {(n_seeds,)}:
            raise ValueError(
                f"params must be stacked with a leading axis of "
                f"n_seeds={n_seeds} on every leaf; got leading shapes "
                f"{sorted(leading)}."
            )
        probe = jax.tree.map(lambda l: l[0], params)
        return params, probe, check_params(net, probe)
    dtype = check_float_dtype(given.get("dtype"))
    # Shapes and dtypes only: nothing is drawn or compiled for them.
    probe = jax.eval_shape(
        lambda k: net.init(k, scheme=scheme, dtype=dtype), jax.random.key(0)
    )
    return None, probe, dtype


def _checked_run(net, optimizer, steps, dtype, xy, given: dict) -> dict:
    """The checks one run and a sweep share, in this order: the data, the
    held-out data, the net, optimizer, steps, rule, batch size and the
    schedule of records. Returns :class:`Options`' fields."""
    x, y = _check_data(net, dtype, *xy)
    eval_data = given.get("eval_data")
    x_eval, y_eval = _eval_arrays(net, dtype, eval_data)
    check_net(net)
    _check_optimizer(optimizer)
    steps = positive_int(steps, "steps")
    rule = _resolve_rule(given.get("grad"), given.get("rule"))
    batch_size = given.get("batch_size")
    if batch_size is not None:
        batch_size = positive_int(batch_size, "batch_size")
        if batch_size > x.shape[0]:
            raise ValueError(
                f"batch_size ({batch_size}) must not exceed the number "
                f"of training examples ({x.shape[0]})."
            )
    schedule = _check_schedule(steps, given, eval_data is not None)
    sharpness = _check_diagnostics(net, given, schedule[-1])
    return dict(
        config=_Config(net, optimizer, steps, rule, batch_size, *schedule, *sharpness),
        data=TrainData(x, y, x_eval, y_eval),
        dtype=jnp.dtype(dtype).name,
        log_every_given=given.get("log_every") is not None,
    )


def _check_schedule(steps: int, given: dict, has_eval: bool) -> tuple:
    """(log_every (1 until chosen), eval_every, alignment_every,
    diagnostics_every), checked against the steps and each other."""
    log_every = given.get("log_every")
    log_every = 1 if log_every is None else positive_int(log_every, "log_every")
    if steps % log_every:
        raise ValueError(f"log_every ({log_every}) must divide steps ({steps}).")
    eval_every = given.get("eval_every")
    if has_eval:
        eval_every = (
            steps if eval_every is None else positive_int(eval_every, "eval_every")
        )
        if eval_every % log_every:
            raise ValueError(
                f"eval_every ({eval_every}) must be a multiple of "
                f"log_every ({log_every})."
            )
    elif eval_every is not None:
        raise ValueError("eval_every needs eval_data=(x_eval, y_eval).")
    measures = [given.get(name) for name in ("alignment_every", "diagnostics_every")]
    for i, name in enumerate(("alignment_every", "diagnostics_every")):
        if measures[i] is not None:
            measures[i] = positive_int(measures[i], name)
            if measures[i] % log_every:
                raise ValueError(
                    f"{name} ({measures[i]}) must be a multiple of "
                    f"log_every ({log_every})."
                )
    return log_every, eval_every, *measures


def _check_diagnostics(net, given: dict, diagnostics_every) -> tuple:
    """(sharpness, sharpness_iters) checked for ``net``: they go with
    ``diagnostics_every``; the defaults when it is None."""
    names = ("sharpness", "sharpness_iters")
    defaults = [_Config._field_defaults[name] for name in names]
    if diagnostics_every is None:
        if any(name in given for name in names):
            raise ValueError(
                "sharpness and sharpness_iters go with diagnostics_every (steps "
                "between measures of the gradient's diagnostics); give it too."
            )
        return tuple(defaults)
    sharpness, iters = (given.get(n, d) for n, d in zip(names, defaults, strict=True))
    return check_sharpness(net, sharpness, iters, names)


def _with_log_every(options: Options) -> Options:
    """``options`` with the default log_every where none was given."""
    if options.log_every_given:
        return options
    config = options.config._replace(log_every=_default_log_every(options))
    return dataclasses.replace(options, config=config)


def _check_strategy(strategy, chunk_size) -> tuple[str, int | None]:
    """(strategy, chunk_size) as given, checked; ``"chunked"`` with a chunk_size."""
    choice(strategy, "strategy", STRATEGIES)
    if chunk_size is not None:
        chunk_size = positive_int(chunk_size, "chunk_size")
        if strategy not in ("chunked", "auto"):
            raise ValueError(
                f"chunk_size goes with strategy='chunked' (or 'auto'); "
                f"got strategy={strategy!r}."
            )
        return "chunked", chunk_size
    if strategy == "chunked":
        raise ValueError("strategy='chunked' needs chunk_size.")
    return strategy, None


def _check_optimizer(optimizer) -> None:
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "optimizer must be an optax.GradientTransformation such as "
            f"optax.sgd(0.1); got {type(optimizer).__name__}."
        )


def _resolve_rule(grad, rule) -> Rule:
    """The rule of ``grad`` (an alias) or ``rule``; backprop by default."""
    if rule is not None:
        if grad is not None:
            raise ValueError(
                "give grad or rule, not both (grad='manual' is "
                "rule=jp.rules.backprop(), grad='autodiff' is jp.rules.autodiff())."
            )
        return check_rule(rule)
    if grad is None:
        return backprop()
    choice(grad, "grad", GRADS)
    return backprop() if grad == "manual" else autodiff()


#: With ``log_every=None`` (the default) every step is recorded unless the
#: whole record, every run's rows per block (the loss, held-out loss and
#: accuracy, alignment angles, diagnostics), would pass this many bytes; then
#: the smallest divisor of the steps (and of eval_every, alignment_every,
#: diagnostics_every) that fits. Each
#: pass over the record costs as much as many steps of a small network
#: (docs/design.md, "The default `log_every`").
LOG_BYTES = 16 * 2**20

#: With ``log_every=None``, a sweep's blocks (``train_seeds``, ``Trainer``; not
#: ``train``'s one run) also hold at least this many FLOPs of steps per run
#: (``MLP.flops`` of a step's batch): each block ends in a log write and
#: bookkeeping that cost about as much as a tiny network's whole step
#: (docs/design.md, "The default `log_every`").
MIN_BLOCK_FLOPS = 1024


def _default_log_every(options: Options) -> int:
    """The smallest admissible log_every whose record fits in LOG_BYTES and,
    for a sweep (``n_runs > 1``), whose blocks hold MIN_BLOCK_FLOPS a run."""
    config, n_runs, itemsize = options.config, options.n_runs, options.itemsize
    rows = log_rows(config, options.data.x_eval is not None)
    measures = (config.eval_every, config.alignment_every, config.diagnostics_every)
    g = math.gcd(config.steps, *(every or 0 for every in measures))
    fits = [
        d
        for d in range(1, g + 1)
        if g % d == 0 and n_runs * (config.steps // d) * rows * itemsize <= LOG_BYTES
    ] or [g]
    if n_runs == 1:
        return fits[0]
    batch = config.batch_size or options.n_examples
    want = -(-MIN_BLOCK_FLOPS // config.net.flops(batch))
    enough = [d for d in fits if d >= want]
    # Not at any price: with no divisor near the FLOPs' (1009 steps: 1 or all
    # of them), the record's size alone decides.
    return enough[0] if enough and enough[0] <= 4 * max(want, fits[0]) else fits[0]


def _check_data(net, params_dtype, x, y, name: str = "") -> tuple[Array, Array]:
    """x, y checked by the net (shapes, dtypes, labels), of equal length, finite."""
    n_x, n_y = np.shape(x)[:1], np.shape(y)[:1]
    if np.ndim(x) != 1 + len(net.input_shape):
        shape = ", ".join(map(str, net.input_shape))
        raise ValueError(
            f"x{name} must be a batch of shape (n, {shape}); got shape {np.shape(x)}."
        )
    if n_x != n_y:
        raise ValueError(
            f"x{name} and y{name} must have the same length; got "
            f"{n_x[0]} and {n_y[0] if n_y else 'a scalar'}."
        )
    if not isinstance(x, jax.core.Tracer) and not isinstance(y, jax.core.Tracer):
        # Once per call, outside the compiled loop: a NaN in the data would
        # otherwise show up only as every run "diverging".
        check_dataset(x, y, name=f"x{name}, y{name}")
    x, _ = check_inputs(x, net.input_shape, params_dtype, f"x{name}")
    return x, check_targets(
        y, net.cost_fn, net.n_out, x.shape[0], False, params_dtype, f"y{name}"
    )


def _eval_arrays(net, dtype, eval_data):
    if eval_data is None:
        return None, None
    if isinstance(eval_data, Dataset):
        if eval_data.x_test is not None:
            raise TypeError(
                "eval_data is a jp.data.Dataset with a held-out part: give "
                "(data.x_test, data.y_test), or (data.x, data.y) for its training "
                "part."
            )
        eval_data = tuple(eval_data)
    if not (isinstance(eval_data, (tuple, list)) and len(eval_data) == 2):
        raise TypeError("eval_data must be a pair (x_eval, y_eval).")
    return _check_data(net, dtype, *eval_data, name="_eval")


def _check_keys(keys) -> int:
    dtype = getattr(keys, "dtype", None)
    shape = getattr(keys, "shape", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if len(shape) != 1:
            raise TypeError(
                f"keys must be a 1-D array of PRNG keys, e.g. "
                f"jax.random.split(jax.random.key(0), n); got shape {shape}."
            )
        return shape[0]
    if dtype == jnp.uint32 and shape is not None and len(shape) == 2 and shape[1] == 2:
        return shape[0]
    raise TypeError(
        "keys must be an array of PRNG keys, e.g. "
        "jax.random.split(jax.random.key(0), n); got "
        f"{type(keys).__name__}"
        + (f" of dtype {dtype} and shape {shape}." if dtype else ".")
    )


def _check_devices(devices) -> list:
    """The devices to lay the runs over: every device of every process by
    default (one process: its own devices)."""
    if devices is None:
        return jax.devices() if jax.process_count() > 1 else jax.local_devices()
    devices = list(devices)
    if not devices:
        raise ValueError("devices must name at least one device.")
    if not all(isinstance(d, jax.Device) for d in devices):
        raise TypeError(
            "devices must be a sequence of jax.Device, e.g. jax.devices()[:2]; "
            f"got {[type(d).__name__ for d in devices][:3]}."
        )
    if len(set(devices)) != len(devices):
        twice = next(d for i, d in enumerate(devices) if d in devices[:i])
        raise ValueError(f"devices must not name a device twice; {twice} is.")
    here = {d.process_index for d in devices}
    if len(here) == 1 and jax.process_index() not in here:
        raise ValueError(
            f"devices belong to process {here.pop()}, not to this one "
            f"({jax.process_index()}): give this process's devices, or devices "
            f"of every process."
        )
    missing = sorted(set(range(jax.process_count())) - here)
    if len(here) > 1 and missing:
        raise ValueError(
            f"devices span several processes but none of processes {missing}: "
            f"runs laid over several processes need devices of every process "
            f"(each runs the same program), e.g. jax.devices()."
        )
    return devices
