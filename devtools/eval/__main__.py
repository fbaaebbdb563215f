"""``python -m devtools.eval``: relevance, straight to ES vs through the sidecar."""

import sys

from devtools.eval.cli import main

sys.exit(main())
