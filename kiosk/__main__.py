"""`python -m kiosk [--config PATH] [command]`; with no command, the daemon."""

import sys

from kiosk.cli import main

if __name__ == "__main__":
    sys.exit(main())
