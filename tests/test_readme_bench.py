"""The README's benchmark table is the one generated from the stored ``dtx bench AREA --json`` runs.

``bench/results/<area>.json`` holds the output of one ``dtx bench AREA --json`` per area, and
``bench/results/<area>.<name>.json`` that of a focused ``dtx bench AREA -k ... --json`` run (the
README names its ``-k``);
``bench/readme_table.py`` turns them into the table, and the README must hold it verbatim, so every
number and ratio in the README can be recomputed from those runs (and rerun: the command is the
file's area). The ratios themselves are the JSON's own ``ratios``, recomputed here from its rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dtxfast._benchsuite.readme_table import table
from dtxfast.cli._bench import ratios

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def _results() -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}


def test_readme_table_is_generated_from_the_stored_runs() -> None:
    results = _results()
    if not results:
        pytest.skip("no stored benchmark runs")
    assert table(results) in (REPO / "README.md").read_text()


def test_stored_ratios_are_those_of_their_rows() -> None:
    results = _results()
    if not results:
        pytest.skip("no stored benchmark runs")
    for area, res in results.items():
        assert res["area"] == area.split(".")[0]
        assert res["ratios"] == ratios(res["rows"]), area
