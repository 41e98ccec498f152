"""One Omnicard app process for the multi-process tests: ``python -m tests.events.server``
serves on a free port of 127.0.0.1 (printed first) until it is killed."""

import os
import sys

from werkzeug.serving import make_server

from app import create_app
from tests.conftest import TEST_CONFIG

if __name__ == "__main__":
    app = create_app(TEST_CONFIG | {
        "DATABASE_URL": os.environ["DATABASE_URL"], "EVENTS_HUB": True, "EVENTS_HEARTBEAT_S": 1,
    })  # fmt: skip
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(server.server_port, flush=True)
    sys.stdout.close()
    server.serve_forever()
