"""Harvesting: discover (image, mask) pairs, plan a run in the catalog, and work its jobs."""

from .inputs import Pair, discover
from .worker import HarvestParams, Summary, plan, work

__all__ = ["HarvestParams", "Pair", "Summary", "discover", "plan", "work"]
