"""The reference XOR network in PyTorch, over many seeds at once: the baselines.

The workload is the reference program's (2-2-1 sigmoid network, summed
½‖ŷ − y‖², full-batch SGD with η = 0.1, U[0, 1) initial weights and biases), run
for ``n_seeds`` independent networks side by side. PyTorch is optional: import
this module only after checking ``available()``.

Contenders, each PyTorch's own way of training an ensemble:

- ``eager``: one batched network, parameters (n_seeds, ...) and ``torch.bmm``,
  gradients by eager autograd (``loss.backward()``), updated in place. Summing the
  seeds' losses gives each seed its own gradient, since they share no parameter.
- ``func``: ``torch.func.vmap(torch.func.grad(loss))`` over stacked parameters
  of one single-network loss, the ``torch.func`` model-ensembling recipe.
- ``compiled``: the ``func`` step under ``torch.compile`` (needs a C++ compiler).
"""

from __future__ import annotations

import importlib.util

from benchmarks.numpy_xor import XOR_INPUTS, XOR_OUTPUTS, ensemble_params

LEARNING_RATE = 0.1


def available() -> bool:
    """Whether PyTorch can be imported."""
    return importlib.util.find_spec("torch") is not None


def _tensors(n_seeds: int, dtype: str, batched: bool) -> dict:
    """The shared initial parameters as tensors; biases (n_seeds, 1, n) if batched."""
    import torch

    return {
        k: torch.as_tensor(v[:, None] if batched and k.startswith("b") else v)
        for k, v in ensemble_params(n_seeds, dtype).items()
    }


def _loss(params, x, y):
    """½ Σ (ŷ − y)² of one network (or of a batch of them, summed)."""
    import torch

    a1 = torch.sigmoid(x @ params["w1"] + params["b1"])
    y_hat = torch.sigmoid(a1 @ params["w2"] + params["b2"])
    return 0.5 * torch.sum((y_hat - y) ** 2)


def make_eager(n_seeds: int, dtype: str):
    """``run(epochs) -> final params``: batched network, eager autograd."""
    import torch

    torch_dtype = getattr(torch, dtype)
    x = torch.as_tensor(XOR_INPUTS, dtype=torch_dtype).expand(n_seeds, 4, 2)
    y = torch.as_tensor(XOR_OUTPUTS, dtype=torch_dtype).expand(n_seeds, 4, 1)

    def run(epochs: int):
        params = {
            k: v.requires_grad_() for k, v in _tensors(n_seeds, dtype, True).items()
        }
        values = list(params.values())
        for _ in range(epochs):
            loss = _loss(params, x, y)
            grads = torch.autograd.grad(loss, values)
            with torch.no_grad():
                torch._foreach_add_(values, grads, alpha=-LEARNING_RATE)
        return params

    return run


def _func_step():
    import torch
    from torch.func import grad, vmap

    per_seed_grad = vmap(grad(_loss), in_dims=(0, None, None))

    def step(params, x, y):
        grads = per_seed_grad(params, x, y)
        return {k: params[k] - LEARNING_RATE * grads[k] for k in params}

    return torch, step


def make_func(n_seeds: int, dtype: str, compiled: bool = False):
    """``run(epochs) -> final params``: ``torch.func`` vmap-of-grad ensemble."""
    torch, step = _func_step()
    if compiled:
        step = torch.compile(step, dynamic=False)
    torch_dtype = getattr(torch, dtype)
    x = torch.as_tensor(XOR_INPUTS, dtype=torch_dtype)
    y = torch.as_tensor(XOR_OUTPUTS, dtype=torch_dtype)

    def run(epochs: int):
        params = _tensors(n_seeds, dtype, False)
        with torch.no_grad():
            for _ in range(epochs):
                params = step(params, x, y)
        return params

    return run


def versions() -> dict:
    """PyTorch's version and thread count, for the result file."""
    import torch

    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
