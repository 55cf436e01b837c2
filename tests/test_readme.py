"""The README quotes the cookbook verbatim: the quoted blocks must stay equal to the file."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_databricks_section_quotes_the_cookbook_verbatim():
    readme = (ROOT / "README.md").read_text()
    cookbook = (ROOT / "examples" / "cookbook.py").read_text()
    databricks = _section(readme, "On Databricks")
    quoted = databricks[databricks.index("### The cookbook") :]
    blocks = re.findall(r"```python\n(.*?)```", quoted, flags=re.S)
    assert len(blocks) == 2
    for block in blocks:
        assert block.startswith('section("')  # a whole cookbook section, from its title
        assert block in cookbook, f"README block no longer in examples/cookbook.py:\n{block}"
