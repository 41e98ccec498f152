"""The till's devices: the NFC reader, the barcode scanner and the receipt printer.

Each is a thin transport behind a small interface, chosen by the till's config; the simulated
far ends (a tag on nfcpy's udp frontend, a pty scanner, a file printer) run the same library
code paths as the real devices.
"""

import os
import tempfile
from pathlib import Path


def _escpos_capabilities_folder() -> None:
    """python-escpos writes its printer profiles' cache when it is imported: to a new temp
    folder every time unless ESCPOS_CAPABILITIES_PICKLE_DIR names one, and it fails if that
    folder is missing. Give it one folder that exists (the user's cache by default)."""
    folder = os.environ.get("ESCPOS_CAPABILITIES_PICKLE_DIR") or str(
        Path.home() / ".cache" / "omnicard-escpos"
    )
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        folder = tempfile.mkdtemp(prefix="omnicard-escpos-")
    os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"] = folder


_escpos_capabilities_folder()
