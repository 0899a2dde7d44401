"""`python -m mbs.dashboards deploy` writes the generated files under deploy/."""

from mbs.dashboards import main

raise SystemExit(main())
