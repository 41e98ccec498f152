"""An Omnicard app process for the tests that meet the server across the network (the till's,
the website's in a browser): ``python -m tests.server [PORT]`` serves on 127.0.0.1 (PORT, or
a free one) with its event hub, prints the port, and serves until killed. The till's tests
stop it and start it again on the same port, as a till sees its server go away and come back.
Configuration: the tests' own (tests/conftest.py TEST_CONFIG) over the environment's, with
the database named by ``DATABASE_URL``."""

import os
import sys

from werkzeug.serving import make_server

from app import create_app
from tests.conftest import TEST_CONFIG

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    app = create_app(TEST_CONFIG | {
        "DATABASE_URL": os.environ["DATABASE_URL"], "EVENTS_HUB": True, "EVENTS_HEARTBEAT_S": 1,
    })  # fmt: skip
    server = make_server("127.0.0.1", port, app, threaded=True)
    print(server.server_port, flush=True)
    sys.stdout.close()
    server.serve_forever()
