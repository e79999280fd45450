"""The reference document's NumPy XOR program, kept as a baseline.

The arithmetic is the reference program's, line for line (2-2-1 sigmoid network,
η = 0.1, full-batch updates written as ``+= ... * learning_rate``), wrapped in a
function so that it can be timed and compared. It prints, after 10000 epochs,
``[[0.06029012] [0.94447222] [0.944367] [0.05997169]]``.
"""

from __future__ import annotations

import numpy as np

# The printout to match and the initial draws are the reference example's own.
from jaxprop.reference import REFERENCE_OUTPUT as REFERENCE_OUTPUT
from jaxprop.reference import initial_weights

XOR_INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
XOR_OUTPUTS = np.array([[0], [1], [1], [0]])


def ensemble_params(n_seeds: int, dtype: str, seed: int = 0) -> dict[str, np.ndarray]:
    """U[0, 1) initial parameters of n_seeds networks, shared by every contender.

    The reference draws its parameters from U[0, 1) (``np.random.rand``); every
    benchmark contender starts from these same draws, so that all of them do the
    same arithmetic on the same numbers.

    Returns:
      w1: (n_seeds, 2, 2), b1: (n_seeds, 2), w2: (n_seeds, 2, 1), b2: (n_seeds, 1).
    """
    rng = np.random.default_rng(seed)
    shapes = {"w1": (2, 2), "b1": (2,), "w2": (2, 1), "b2": (1,)}
    return {k: rng.random((n_seeds, *s)).astype(dtype) for k, s in shapes.items()}


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def sigmoid_derivative(x):
    return x * (1 - x)


def train(epochs: int = 10000, learning_rate: float = 0.1, seed: int = 42):
    """Runs the reference program; returns the last forward pass's output (4, 1)."""
    inputs, outputs = XOR_INPUTS, XOR_OUTPUTS
    weights_input_hidden, weights_hidden_output, bias_hidden, bias_output = (
        initial_weights(seed)
    )
    predicted_output = None
    for _ in range(epochs):
        hidden_layer_input = np.dot(inputs, weights_input_hidden) + bias_hidden
        hidden_layer_output = sigmoid(hidden_layer_input)
        output_layer_input = (
            np.dot(hidden_layer_output, weights_hidden_output) + bias_output
        )
        predicted_output = sigmoid(output_layer_input)

        error = outputs - predicted_output
        d_predicted_output = error * sigmoid_derivative(predicted_output)
        error_hidden_layer = d_predicted_output.dot(weights_hidden_output.T)
        d_hidden_layer = error_hidden_layer * sigmoid_derivative(hidden_layer_output)

        weights_hidden_output += (
            hidden_layer_output.T.dot(d_predicted_output) * learning_rate
        )
        weights_input_hidden += inputs.T.dot(d_hidden_layer) * learning_rate
        bias_output += np.sum(d_predicted_output, axis=0, keepdims=True) * learning_rate
        bias_hidden += np.sum(d_hidden_layer, axis=0, keepdims=True) * learning_rate
    return predicted_output


if __name__ == "__main__":
    print("Final Predicted Output:")
    print(train())
