"""``python -m depth_perception.cli``: the same as the ``depth-perception`` command."""

import sys

from . import main

sys.exit(main())
