"""`python -m lmtune_widgets.search`: a search worker from a terminal (`cli.main`)."""
import sys

from .cli import main

sys.exit(main())
