"""What the catalog holds, for people: direction cards, labelled contact sheets (PNG) and a static
HTML gallery. Views read only the catalog, so they need no model and no torch."""

from .cards import NO_PREVIEW, Card, describe, format_number, oriented, split_strip
from .gallery import gallery
from .sheet import SheetLayout, SheetRow, contact_sheet, search_sheet, sheet_rows

__all__ = ["NO_PREVIEW", "Card", "SheetLayout", "SheetRow", "contact_sheet", "describe", "format_number", "gallery",
           "oriented", "search_sheet", "sheet_rows", "split_strip"]
