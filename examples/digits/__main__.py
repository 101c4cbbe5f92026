"""``python -m examples.digits``: see :mod:`examples.digits`."""

import sys

from examples.digits.run import main

sys.exit(main())
