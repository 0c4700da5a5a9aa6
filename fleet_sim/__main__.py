"""Entry point of `python -m fleet_sim`."""

import sys

from fleet_sim.cli import main

# Guarded so that importing the module (multiprocessing children do) never runs the command.
if __name__ == "__main__":
    sys.exit(main())
