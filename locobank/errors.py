"""Typed errors. The library raises these; only the CLI turns them into messages."""


class LocobankError(Exception):
    """Base class for every error locobank raises on purpose.

    ``params`` names the Python parameters (or request fields) the message speaks of, written in
    it as their plain names: a front end can then say them its own way (the CLI as its flags)."""

    def __init__(self, *args: object, params: tuple[str, ...] = ()) -> None:
        super().__init__(*args)
        self.params = tuple(params)


class InputError(LocobankError, ValueError):
    """An image, mask, direction or option that cannot be used as given."""


class ArgumentError(InputError):
    """Options that do not fit together, or a value out of its range: a usage error (exit code 2)."""


class ModelLoadError(LocobankError):
    """A model id or folder that could not be loaded."""


class FingerprintMismatch(InputError):
    """A direction that was found with a different model or resolution."""


class CatalogError(LocobankError):
    """The catalog database cannot be opened or used as asked."""


class SchemaOutOfDate(CatalogError):
    """The catalog's schema is not at the code's migration head; run ``locobank db upgrade``."""


class NotFound(CatalogError, LookupError):
    """An id (direction, job, run, model) that the catalog does not hold."""


class LeaseLost(CatalogError):
    """A worker tried to finish a job whose lease another worker now holds."""


class IntegrityError(CatalogError):
    """Stored or shipped bytes that do not match their recorded sha256, shape or format."""


class PackError(IntegrityError, InputError):
    """A direction pack file that is not a valid, untampered locobank safetensors pack."""


class SearchIndexError(LocobankError):
    """The FAISS search index cannot be built, read or searched as asked."""


class IndexMissing(SearchIndexError):
    """No search index has been built for this CLIP model yet; ``locobank index build`` makes one."""
