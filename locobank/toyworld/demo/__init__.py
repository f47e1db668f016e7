"""``locobank demo``: locobank's main job end to end on the toy world (:mod:`.run`), its queries
through one search -> apply loop for both halves (:mod:`.queries`), the latent half's harvest
manifest and directions (:mod:`.latent`), and the report it leaves (:mod:`.page`)."""

from .run import DemoConfig, DemoResult, run_demo

__all__ = ["DemoConfig", "DemoResult", "run_demo"]
