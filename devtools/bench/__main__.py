"""``python -m devtools.bench``: the benchmark suite."""

import sys

from devtools.bench.suite import main

sys.exit(main())
