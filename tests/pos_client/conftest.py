"""The till's tests. python-escpos writes its capabilities cache to a new temp folder on
every import unless told where: keep it in one place, as scripts/bootstrap.sh does."""

import os
import tempfile

os.environ.setdefault(
    "ESCPOS_CAPABILITIES_PICKLE_DIR", os.path.join(tempfile.gettempdir(), "omnicard-escpos")
)
os.makedirs(os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"], exist_ok=True)

# The live server and the world to sell in, for the tests of the till program (h-client).
from tests.pos_client.live import admin, config_path, server, world  # noqa: E402, F401
