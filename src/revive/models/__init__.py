"""LightningModules: losses, optimizers, schedules, metrics and image logging."""
