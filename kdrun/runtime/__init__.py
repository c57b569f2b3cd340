"""The run's environment: device and precision, several nodes, signals and preemption."""
