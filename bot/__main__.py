"""`python -m bot …`: see `bot.cli`."""

import os
import sys

from bot.cli import main

try:
    sys.exit(main())
except BrokenPipeError:
    # The reader went away (`python -m bot demo | head`): stop quietly, as other command-line tools do.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(1)
