"""``python -m refit_cli ...`` = the ``refit`` console script."""

from refit_cli.cli import main

raise SystemExit(main())
