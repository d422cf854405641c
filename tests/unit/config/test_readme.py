"""The README's configuration tables agree with the table of variables (`bot/config/variables.py`).

The rule: the README's two `| variable | default | meaning |` tables (under "Configuration": the Slack one under
"Slack and access", the other under "Defender, state and logging") name exactly the variables of the table, each
in its own table, and each row's default and meaning are the table's text (spaces aside). A row may name several
variables that share its default and meaning (`A` / `B`). On a mismatch, the message shows the row the table
would write (`python -m bot.config.docs` prints both tables).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config.docs import SLACK_TABLE_GROUPS, Row, readme_rows
from bot.config.variables import VARIABLES

README = Path(__file__).resolve().parents[3] / "README.md"
HEADER = "| variable | default | meaning |"
SECTIONS = {True: "### Slack and access", False: "### Defender, state and logging"}


def _squash(text: str) -> str:
    return " ".join(text.split())


def readme_table(section: str) -> list[Row]:
    """The rows of the first variables table after the `section` heading."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(section)
    header = next(n for n in range(start, len(lines)) if lines[n].strip() == HEADER)
    rows: list[Row] = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        assert len(cells) == 3, f"a row of the {section!r} table does not have three cells: {line}"
        names = tuple(re.findall(r"`([A-Z0-9_]+)`", cells[0]))
        assert names, f"a row of the {section!r} table names no variable: {line}"
        rows.append(Row(names, _squash(cells[1]), _squash(cells[2])))
    return rows


@pytest.mark.parametrize("slack", [True, False], ids=["slack-table", "configuration-table"])
def test_each_readme_table_names_exactly_its_variables(slack: bool) -> None:
    documented = [name for row in readme_table(SECTIONS[slack]) for name in row.names]
    expected = [v.name for v in VARIABLES if (v.group in SLACK_TABLE_GROUPS) == slack]
    assert len(documented) == len(set(documented)), f"named twice in the README: {documented}"
    assert set(documented) - set(expected) == set(), "in the README's table, not in bot/config/variables.py"
    assert set(expected) - set(documented) == set(), "in bot/config/variables.py, not in the README's table"


@pytest.mark.parametrize("slack", [True, False], ids=["slack-table", "configuration-table"])
def test_each_readme_row_says_the_tables_default_and_meaning(slack: bool) -> None:
    by_name = {v.name: v for v in VARIABLES}
    for row in readme_table(SECTIONS[slack]):
        for name in row.names:
            variable = by_name.get(name)
            if variable is None:  # the test above names it
                continue
            wanted = Row(row.names, variable.documented_default, _squash(variable.meaning))
            assert (row.default, row.meaning) == (wanted.default, wanted.meaning), (
                f"README row of {name} disagrees with bot/config/variables.py; it would read:\n{wanted.markdown()}"
            )


@pytest.mark.parametrize("slack", [True, False], ids=["slack-table", "configuration-table"])
def test_the_rendered_table_is_the_readmes(slack: bool) -> None:
    """Same rows, same order: pasting `python -m bot.config.docs` output keeps the README as it is."""
    rendered = [Row(r.names, r.default, _squash(r.meaning)) for r in readme_rows(slack=slack)]
    assert readme_table(SECTIONS[slack]) == rendered
