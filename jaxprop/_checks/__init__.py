"""Checks: the δ pass against ``jax.grad`` and finite differences; a user's
activation or cost against its derivative."""
