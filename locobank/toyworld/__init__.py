"""The toy world, in rooms: the data set (:mod:`.data`: faces, captions, probes), the training of
the toy models (:mod:`.training`), their measurement (:mod:`.evaluation`), the reports that
``locobank toy`` prints (:mod:`.reports`) and the demo that runs locobank on it (:mod:`.demo`)."""

from .data.faces import (HELD_OUT_SEED, PARTS, Face, FaceAttributes, batch, face, render, sample_attributes,
                         write_dataset)

__all__ = ["HELD_OUT_SEED", "PARTS", "Face", "FaceAttributes", "batch", "face", "render", "sample_attributes",
           "write_dataset"]
