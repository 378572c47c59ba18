"""revive: old-photo restoration and reference-based super-resolution on Lightning + Hydra."""

__version__ = "0.1.0"
