"""``python -m medimg`` is the same as the ``medimg`` command."""

from medimg.cli import main

raise SystemExit(main())
