"""Lets `python -m longtask_cli` stand for the `longtask` console script."""

from longtask_cli.main import main

raise SystemExit(main())
