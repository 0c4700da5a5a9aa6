"""`python -m edge_packaging`: see `edge_packaging.cli`."""

import os
import sys

from edge_packaging.cli import main

try:
    raise SystemExit(main())
except BrokenPipeError:  # output piped into `head` and closed early: not an error of the bundle
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise SystemExit(0) from None
