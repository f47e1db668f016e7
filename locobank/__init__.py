"""locobank: a searchable library of reusable LOCO Edit directions for diffusion models."""

__version__ = "0.1.0"
