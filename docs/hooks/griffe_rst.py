"""Griffe extension for the API reference: msvit's docstrings are written for ``help()`` and Sphinx
habits (``:class:`~msvit.errors.ArtifactError``` roles, ``>>>`` examples, ````code```` in double
backticks); the site renders them as Markdown. This turns, before rendering:

- a run of ``>>>`` / ``...`` lines into a fenced ``pycon`` block (Markdown would make it a quote);
- ``:role:`~a.b.C``` into ```C``` and ``:role:`a.b.C``` into ```a.b.C``` (plain code: a cross-reference
  to an object the reference does not document would fail the strict build);
- ````x```` into ```x```.

The docstrings themselves stay as they are.
"""
from __future__ import annotations

import re

from griffe import Extension, Object

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")
_DOUBLE = re.compile(r"``([^`]+)``")


def _role(m: re.Match) -> str:
    target = m.group(2)
    return f"`{target.rsplit('.', 1)[-1] if m.group(1) else target}`"


def markdown(text: str) -> str:
    text = _DOUBLE.sub(r"`\1`", _ROLE.sub(_role, text))  # before any fence is written
    out, block = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(">>>") or (block and stripped.startswith("...")):
            block.append(stripped)
            continue
        if block:
            out += ["", "```pycon", *block, "```", ""]
            block = []
        out.append(line)
    if block:
        out += ["", "```pycon", *block, "```"]
    return "\n".join(out)


class SphinxishToMarkdown(Extension):
    def on_instance(self, *, obj: Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
