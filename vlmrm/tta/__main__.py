"""``python -m vlmrm.tta`` — see :mod:`vlmrm.tta.cli`."""

from vlmrm.tta.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
