"""`python -m lmtune_widgets.search`: a search worker from a terminal (see `main`)."""
import sys

from . import main

sys.exit(main())
