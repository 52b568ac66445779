"""``python -m serverless_sse.cli``: the same as the ``serverless-sse`` command."""

import sys

from . import main

sys.exit(main())
