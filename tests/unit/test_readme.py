"""The README stays true: its configuration table is the one the Config Struct generates."""

from __future__ import annotations

import re
from pathlib import Path

from taskstream.shared import config, metrics

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_config_table_matches_the_config_struct() -> None:
    text = README.read_text()
    match = re.search(r"<!-- config-table -->\n(.*?)\n<!-- /config-table -->", text, re.S)
    assert match, "the README lost its config-table markers"
    assert match.group(1) == config.markdown_table(), (
        "README config table is stale: paste `taskstream config --markdown`"
    )


def test_readme_metrics_table_matches_the_instruments() -> None:
    text = README.read_text()
    match = re.search(r"<!-- metrics-table -->\n(.*?)\n<!-- /metrics-table -->", text, re.S)
    assert match, "the README lost its metrics-table markers"
    assert match.group(1) == metrics.markdown_table(), "README metrics table is stale"


def test_every_config_field_has_a_description_and_an_environment_variable() -> None:
    names = [config.env_name(f) for f in config.FIELDS]
    assert len(names) == len(set(names))
    assert set(config.DESCRIPTIONS) == set(config.FIELDS)


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text
