"""``python -m vlmrm.label``: see :mod:`vlmrm.label.cli`."""

from vlmrm.label.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
