"""Class fields in code text: a dataclass's, a pydantic model's or a TypeScript class's
`name: Type = value` lines, which the chunker does not count as definitions. Retrieval finds a
question's `Owner.field` by them, and the answer cites the line."""

from __future__ import annotations

import re

# A type annotation as a field writes it: `int`, `str | None`, `Optional[list[str]]`.
_FIELD_TYPE = r"[A-Za-z_][\w.]*(?:\[[^\n]*\])?"


def field_line(member: str) -> re.Pattern[str]:
    """An indented `member = value`, `member: Type = value` or `member: Type` line: a class
    field (a dataclass's, pydantic's, a TypeScript property), which the chunker does not count
    as a definition. A docstring's `member:` heading or `member: prose.` line is none."""
    name = re.escape(member)
    annotation = rf":[ \t]*{_FIELD_TYPE}(?:[ \t]*\|[ \t]*{_FIELD_TYPE})*[ \t]*;?[ \t]*(?:#[^\n]*)?$"
    return re.compile(
        rf"^[ \t]+{name}\??[ \t]*(?::[^\n=]*=(?!=)|=(?!=)|{annotation})", re.MULTILINE
    )
