"""The many-run engine: options, the compiled loop, how runs share devices,
checkpoints; ``train``, ``Trainer``, ``train_seeds``."""
