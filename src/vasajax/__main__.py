"""``python -m vasajax ...`` runs the ``vasajax`` command (for environments where the script is not installed)."""

import sys

from vasajax.cli import main

sys.exit(main())
