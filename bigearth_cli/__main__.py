"""``python -m bigearth_cli``: the same as the ``bigearth-sr`` command."""
import sys

from .cli import main

sys.exit(main())
