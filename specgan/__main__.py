import sys

from specgan.cli import main

sys.exit(main())
