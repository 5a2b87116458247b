"""`python -m lmtune_widgets run ...`: see `lmtune_widgets.cli`."""
import sys

from .cli import main

sys.exit(main())
