"""Why an input path cannot be opened, in words: missing, a broken symlink, a symlink loop.

``Path.exists()`` answers ``False`` for all three, so a message built on it says "does not
exist" about a file the user can see in ``ls`` — a symlink whose target is gone, or links
that point at each other. :func:`missing_reason` tells them apart, for every command that
checks its inputs before reading them.
"""

from __future__ import annotations

import errno
import os

#: How many links :func:`missing_reason` follows to show a loop (the kernel's own limit is 40).
_MAX_SHOWN = 8


def missing_reason(path: str | os.PathLike) -> str | None:
    """``None`` when ``path`` can be reached; otherwise what is wrong, to follow its name.

    ``"does not exist"``, ``"is a broken symlink (to 'x.mp4', which does not exist)"`` or
    ``"is a symlink loop (a.mp4 -> b.mp4 -> a.mp4)"``. A loop in one of the parent
    folders is named as a loop too.
    """
    try:
        os.stat(path)
        return None
    except OSError as exc:
        code = exc.errno
    if code == errno.ELOOP:
        chain = _link_chain(os.fspath(path))
        return f"is a symlink loop ({chain})" if chain else "is a symlink loop"
    if code in (errno.ENOENT, errno.ENOTDIR) and os.path.islink(path):
        return f"is a broken symlink (to {os.readlink(path)!r}, which does not exist)"
    if code == errno.EACCES:
        return "cannot be reached (permission denied on a folder of its path)"
    return "does not exist"


def _link_chain(path: str) -> str:
    """``a -> b -> a``: the links followed from ``path`` until one repeats (empty if ``path``
    itself is no link, i.e. the loop is in a parent folder)."""
    if not os.path.islink(path):
        return ""
    seen: list[str] = []
    current = os.path.abspath(path)
    while current not in seen and len(seen) < _MAX_SHOWN:
        seen.append(current)
        try:
            target = os.readlink(current)
        except OSError:
            break
        current = os.path.normpath(os.path.join(os.path.dirname(current), target))
    names = [os.path.basename(p) if os.path.dirname(p) == os.path.dirname(seen[0]) else p for p in seen]
    end = os.path.basename(current) if os.path.dirname(current) == os.path.dirname(seen[0]) else current
    return " -> ".join([*names, end])
