"""`python -m app`: the command line (app.cli)."""

import sys

from app.cli import main

sys.exit(main())
