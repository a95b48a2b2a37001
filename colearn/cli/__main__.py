"""``python -m colearn.cli``: the `colearn` script."""
import sys

from colearn.cli import main

sys.exit(main())
