"""``python -m vlmrm.tune``: see :mod:`vlmrm.tune.cli`."""

from vlmrm.tune.cli import main

raise SystemExit(main())
