"""MkDocs hook: Sphinx roles in docstrings read as plain code on the site.

The docstrings name other objects the Sphinx way (``:func:`load_clip```,
``:mod:`~vlmrm.agents.config```), which ``--help``, IDEs and ``help()`` show as they are.
mkdocstrings renders Markdown, where the role stays as text in front of the code span
(``:func:load_clip``); this hook drops the role and, as Sphinx does for a leading ``~``,
keeps only the last component of the name.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:func|class|mod|meth|data|attr|exc|obj|const):<code>(~?)([^<]*)</code>")


def plain_roles(html: str) -> str:
    """``:func:<code>~a.b.c</code>`` → ``<code>c</code>``; without ``~`` the whole name."""
    return _ROLE.sub(lambda m: f"<code>{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}</code>", html)


def on_page_content(html, page, config, files):
    return plain_roles(html)
