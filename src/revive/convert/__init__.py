"""Converters from the papers' official checkpoints to our state_dicts."""
