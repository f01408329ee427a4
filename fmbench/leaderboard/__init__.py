"""The leaderboard: entries (:mod:`.entry`), checking and loading them (:mod:`.store`),
ranking (:mod:`.rank`), rendering (:mod:`.render`), comparing a result with them
(:mod:`.compare`) and re-evaluating one (:mod:`.recheck`).

Entries are only ever ranked with entries of the same protocol hash and dataset: a different
protocol version (or a customised ``+variant``) measures something else.
"""

from .compare import compare, compare_table
from .entry import (
    ENTRY_KIND,
    ENTRY_SCHEMA_VERSION,
    as_entry,
    build_entry,
    describe_hardware,
    model_label,
    write_entry,
)
from .rank import SORT_KEYS, groups, rows, select
from .recheck import RECHECK_TOLERANCE, recheck, recheck_compare
from .render import render_csv, render_json, render_markdown, render_tables
from .store import (
    check_entry,
    entry_paths,
    load_entries,
    schema_validator,
    validate_dir,
)

__all__ = [
    "ENTRY_KIND", "ENTRY_SCHEMA_VERSION", "RECHECK_TOLERANCE", "SORT_KEYS", "as_entry", "build_entry", "check_entry",
    "compare", "compare_table", "describe_hardware", "entry_paths", "groups", "load_entries", "model_label",
    "recheck", "recheck_compare", "render_csv", "render_json", "render_markdown", "render_tables", "rows",
    "schema_validator", "select", "validate_dir", "write_entry",
]
