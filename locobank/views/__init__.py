"""What the catalog holds, for people: direction cards, labelled contact sheets (PNG) and a static
HTML gallery. Views read only the catalog, so they need no model and no torch."""

from .cards import NO_PREVIEW, Card, describe, split_strip
from .gallery import gallery
from .sheet import SheetLayout, SheetRow, contact_sheet, search_sheet, sheet_rows

__all__ = ["NO_PREVIEW", "Card", "SheetLayout", "SheetRow", "contact_sheet", "describe", "gallery", "search_sheet",
           "sheet_rows", "split_strip"]
