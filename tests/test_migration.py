"""README's migration table is generated from the settings table and must be current."""
from pathlib import Path

from uwsgipy import migration
from uwsgipy.config import SETTINGS

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_migration_table_is_current():
    text = README.read_text(encoding="utf-8")
    start, end = text.index(migration.START), text.index(migration.END) + len(migration.END)
    assert text[start:end] == migration.render(), (
        "README.md's migration table is stale: replace it with `python -m uwsgipy.migration`")


def test_every_setting_has_one_row_and_a_status():
    rows = migration.rows()
    assert len(rows) == len(SETTINGS) + 1
    assert {r[1] for r in rows} <= {"implemented", "accepted", "refused", "config language"}
    assert all(r[2] for r in rows), [r for r in rows if not r[2]]
