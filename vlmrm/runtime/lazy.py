"""Lazy package faces: a package's public names, each imported on first use.

A command answers ``--help`` or refuses a bad setting in well under a second only if
importing its package does not import torch, gymnasium or SB3. So the packages that
re-export names from heavy modules (``vlmrm``, ``vlmrm.agents``, ``vlmrm.scoring``,
``vlmrm.tta``, ``vlmrm.tune``) declare where each name lives and hand module
``__getattr__``/``__dir__`` (PEP 562) to :func:`lazy_attributes`.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_attributes(
    package: str, homes: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` for ``package``'s lazily imported names.

    ``homes`` maps a module (absolute, or relative to ``package`` when it starts with a
    dot) to the public names it defines. A name is imported on first access and then
    stored in the package, so later lookups are plain attribute reads.

    Example (in a package's ``__init__.py``)::

        __getattr__, __dir__ = lazy_attributes(__name__, {".trainer": ("train",)})
    """
    exports = {name: module for module, names in homes.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:  # noqa: N807 - the module protocol's name
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__


def moved_attributes(
    module: str, homes: Mapping[str, Sequence[str]], stacklevel: int = 2
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` for names that moved out of ``module``.

    The old path keeps working for a release: each access imports the name from its new
    home (absolute module names in ``homes``) and warns with a :class:`DeprecationWarning`
    naming that home. Importing the old module alone does not warn, so code that merely
    imports a package's modules stays quiet. ``stacklevel`` is the warning's, counted from
    the returned ``__getattr__`` (2: its caller, the line that read the old name).
    """
    exports = {name: home for home, names in homes.items() for name in names}

    def __getattr__(name: str) -> Any:
        home = exports.get(name)
        if home is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(
            f"{module}.{name} moved to {home}.{name}; import it from {home}",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
        return getattr(importlib.import_module(home), name)

    def __dir__() -> list[str]:  # noqa: N807 - the module protocol's name
        return sorted(set(vars(sys.modules[module])) | set(exports))

    return __getattr__, __dir__
