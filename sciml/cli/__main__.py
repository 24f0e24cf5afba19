"""`python -m sciml.cli`: the `sciml` command."""

from . import main


raise SystemExit(main())
