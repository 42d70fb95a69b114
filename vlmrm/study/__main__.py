"""``python -m vlmrm.study``: see :mod:`vlmrm.study.cli`."""

from vlmrm.study.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
