"""``python -m diffagents.data make ID`` (same as ``diffagents data make ID``)."""

import sys

from diffagents.data.cli import main

sys.exit(main())
