"""Lookup tables: measured rows with provenance, resumable, readable by pandas in one call."""

from hwlab.errors import CorruptTailWarning
from hwlab.tables.store import LookupTable, TableId, list_tables

__all__ = ["CorruptTailWarning", "LookupTable", "TableId", "list_tables"]
