"""The toy world: procedural faces with exact masks, and the training of the toy models."""

from .faces import PARTS, Face, FaceAttributes, batch, face, render, sample_attributes, write_dataset

__all__ = ["PARTS", "Face", "FaceAttributes", "batch", "face", "render", "sample_attributes", "write_dataset"]

# Seeds below this number are for training; held-out faces use seeds at or above it.
HELD_OUT_SEED = 1_000_000
