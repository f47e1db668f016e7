"""The catalog: SQL tables of models, images, masks, harvest runs, jobs and directions, and their vectors.

Only this package and ``migrations/`` touch the database. Everything it hands out is a plain frozen
record. It does not import torch until a vector is loaded as a tensor.

    from locobank.catalog import Catalog
    with Catalog.open() as cat:              # $LOCOBANK_DB, else SQLite under $LOCOBANK_HOME
        for d in cat.list_directions(model="local:toy-ddpm"):
            v = cat.load_vector(d.id, expected_fingerprint=d.fingerprint)
"""

from locobank.catalog.connect import default_home, resolve_url, upgrade
from locobank.catalog.records import (
    DirectionRecord,
    EffectRecord,
    EffectsState,
    ImageRecord,
    JobRecord,
    MaskRecord,
    ModelRecord,
    NewDirection,
    NewEffect,
    RunRecord,
)
from locobank.catalog.store import Catalog

__all__ = [
    "Catalog",
    "DirectionRecord",
    "EffectRecord",
    "EffectsState",
    "ImageRecord",
    "JobRecord",
    "MaskRecord",
    "ModelRecord",
    "NewDirection",
    "NewEffect",
    "RunRecord",
    "default_home",
    "resolve_url",
    "upgrade",
]
