"""``python -m dbsal_backend.simulator``: see :mod:`dbsal_backend.simulator.cli`."""

import sys

from .cli import main

main(sys.argv[1:])
