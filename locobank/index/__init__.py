"""The search index: one FAISS index per CLIP model over the catalog's effect embeddings.

The catalog is the truth; an index is a cache of it that records which catalog state it was
built from, so it can say when it is stale and catch up by adding and removing only what changed.

- :mod:`.files`: the metadata sidecar (:class:`IndexInfo`), file names, atomic writes, the lock;
- :mod:`.faiss_ops`: FAISS itself (the only module that imports faiss) and :class:`LoadedIndex`;
- :mod:`.build`: building, loading and checking an index against its catalog.
"""

from .build import build_index, index_status, load_index
from .faiss_ops import LoadedIndex, auto_nlist, default_nprobe, resolve_factory, set_threads, write_index_files
from .files import (DEFAULT_FACTORY, FORMAT, IndexInfo, SignedHit, catalog_folder, catalog_index_folder, foreign_catalog,
                    index_files)

__all__ = ["DEFAULT_FACTORY", "FORMAT", "IndexInfo", "LoadedIndex", "SignedHit", "auto_nlist", "build_index",
           "catalog_folder", "catalog_index_folder", "default_nprobe", "foreign_catalog", "index_files", "index_status",
           "load_index", "resolve_factory", "set_threads", "write_index_files"]
