"""Lookup tables: measured rows with provenance, resumable, readable by pandas in one call."""

from hwlab.tables.store import CorruptTailWarning, LookupTable, TableId, list_tables

__all__ = ["CorruptTailWarning", "LookupTable", "TableId", "list_tables"]
