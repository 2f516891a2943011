"""``python -m pipeline``: the same as the ``specgan-kfp`` command."""

import sys

from pipeline.cli import main

sys.exit(main())
