"""``python -m medvqa`` runs the ``medvqa`` command."""

import sys

from medvqa.cli import main

sys.exit(main())
