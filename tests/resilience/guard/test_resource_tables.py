"""The ``[resources]`` tables mirror the configuration dataclasses they override."""

from __future__ import annotations

from dataclasses import fields

import pytest

from resilience.config_table import ConfigTable, WholeNumber
from resilience.guard.resource_tables import SECTION_TABLES, ResourceTable
from resilience.guard.resources import ResourceConfig


@pytest.mark.parametrize("section", sorted(SECTION_TABLES))
def test_a_section_table_has_every_field_of_its_config_and_no_other(section: str) -> None:
    """A field added to a config is settable from the file, and a whole number stays one."""
    table, config = SECTION_TABLES[section]
    config_fields = {f.name: f.type for f in fields(config)}
    assert list(table.model_fields) == list(config_fields)
    whole = {name for name, kind in config_fields.items() if kind == "int"}
    assert whole == {
        name
        for name, field in table.model_fields.items()
        if WholeNumber in getattr(field.annotation, "__args__", ())
    }


def test_a_resource_table_has_every_section_and_setting_of_a_resource() -> None:
    """Every field of ResourceConfig but its name can be set from ``[resources."<name>"]``."""
    settable = [f.name for f in fields(ResourceConfig) if f.name != "name"]
    assert sorted(ResourceTable.model_fields) == sorted(settable)
    assert all(issubclass(table, ConfigTable) for table, _ in SECTION_TABLES.values())
