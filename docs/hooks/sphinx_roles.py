"""A griffe extension for the API reference: the docstrings' Sphinx roles as inline code.

The docstrings name other objects the Sphinx way (``:class:`ContrastiveHead```, ``:func:`~x.f```);
mkdocstrings' Markdown would show the role literally, so each becomes plain inline code before the
docstring is parsed.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc):`(~?)([^`]+)`")


def as_code(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"  # "~a.b.C" shows "C", as in Sphinx


class SphinxRoles(Extension):
    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(as_code, obj.docstring.value)
