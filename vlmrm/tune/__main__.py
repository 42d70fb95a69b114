"""``python -m vlmrm.tune``: see :mod:`vlmrm.tune.cli`."""

from vlmrm.tune.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
