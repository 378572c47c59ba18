"""Inference pipelines that use nets/ directly (no Lightning needed)."""
