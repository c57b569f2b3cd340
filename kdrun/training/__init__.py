"""Training one strategy with Lightning: fit, the module, callbacks, checkpoints, loggers, resume."""
