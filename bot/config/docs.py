"""The README's configuration tables, written from the table of variables.

`python -m bot.config.docs` prints both tables (the Slack one, then the Configuration one) in Markdown;
tests/unit/config checks that the README's tables say the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.config.kinds import Group
from bot.config.variables import VARIABLES

# The README's "Running the bot" table lists these groups; its "Configuration" table lists the others.
SLACK_TABLE_GROUPS = frozenset({Group.SLACK, Group.ACCESS})
HEADER = "| variable | default | meaning |\n|---|---|---|"


@dataclass(frozen=True, slots=True)
class Row:
    """One README row; variables that share a default and a meaning share a row (`A` / `B`)."""

    names: tuple[str, ...]
    default: str
    meaning: str

    def markdown(self) -> str:
        return f"| {' / '.join(f'`{name}`' for name in self.names)} | {self.default} | {self.meaning} |"


def readme_rows(*, slack: bool) -> list[Row]:
    """The rows of the Slack table (`slack=True`) or of the Configuration table, in the table's order."""
    rows: list[Row] = []
    for variable in VARIABLES:
        if (variable.group in SLACK_TABLE_GROUPS) != slack:
            continue
        default, meaning = variable.documented_default, variable.meaning
        if rows and (rows[-1].default, rows[-1].meaning) == (default, meaning):
            rows[-1] = Row((*rows[-1].names, variable.name), default, meaning)
        else:
            rows.append(Row((variable.name,), default, meaning))
    return rows


def readme_table(*, slack: bool) -> str:
    return "\n".join([HEADER, *(row.markdown() for row in readme_rows(slack=slack))])


if __name__ == "__main__":
    print(readme_table(slack=True), readme_table(slack=False), sep="\n\n")
