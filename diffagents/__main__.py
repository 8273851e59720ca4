import sys

from diffagents.cli import main

sys.exit(main())
