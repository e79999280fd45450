"""The maths of one network: pure functions of arrays, no jit."""
