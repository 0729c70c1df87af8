"""``python -m datafactory`` == the ``datafactory`` command."""

import sys

from datafactory.cli import main

sys.exit(main())
