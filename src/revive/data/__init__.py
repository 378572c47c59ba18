"""Degradations, image reading, datasets and datamodules."""
