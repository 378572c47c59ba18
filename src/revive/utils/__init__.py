"""Shared helpers for the training spine."""
