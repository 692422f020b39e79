#!/usr/bin/env python3
"""Entry point: ``python rebuild.py run`` is the same as ``rebuild run``."""

import sys

from rebuilder.cli import main

if __name__ == "__main__":
    sys.exit(main())
