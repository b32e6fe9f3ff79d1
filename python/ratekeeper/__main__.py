"""``python -m ratekeeper``: the same as the ``ratekeeper`` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
