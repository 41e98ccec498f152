"""`python -m pos_client [--config PATH] <command>`; with no command, the till's screen."""

import sys

from pos_client.cli import main

if __name__ == "__main__":
    sys.exit(main())
