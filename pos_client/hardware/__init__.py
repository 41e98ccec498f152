"""The till's devices: the barcode scanner and the receipt printer (the NFC reader is in
store_devices, shared with the kiosk).

Each is a thin transport behind a small interface, chosen by the till's config; the simulated
far ends (a tag on nfcpy's udp frontend, a pty scanner, a file printer) run the same library
code paths as the real devices.
"""

import importlib.util
import os
import platform
import shutil
import tempfile
from pathlib import Path


def _escpos_capabilities_folder() -> None:
    """python-escpos caches its printer profiles when it is imported: in a new temp folder
    every time unless ESCPOS_CAPABILITIES_PICKLE_DIR names one, and it fails if that folder is
    missing. It also writes the cache in place, so a program starting while another writes it
    reads half a file and fails. Give it one folder that exists (the user's cache by default)
    and, when the cache is not there yet, have it written in a folder of this process's own
    and moved into place whole."""
    folder = Path(
        os.environ.get("ESCPOS_CAPABILITIES_PICKLE_DIR")
        or Path.home() / ".cache" / "omnicard-escpos"
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = Path(tempfile.mkdtemp(prefix="omnicard-escpos-"))
    os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"] = str(folder)
    cache = folder / f"{platform.python_version()}.capabilities.pickle"
    spec = importlib.util.find_spec("escpos")
    profiles = Path(spec.origin).with_name("capabilities.json") if spec and spec.origin else None
    if cache.exists() and (profiles is None or cache.stat().st_mtime >= profiles.stat().st_mtime):
        return
    own = Path(tempfile.mkdtemp(prefix=".writing-", dir=folder))
    os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"] = str(own)
    try:
        import escpos.capabilities  # noqa: F401  (writes the cache into `own`)

        os.replace(own / cache.name, cache)
    finally:
        os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"] = str(folder)
        shutil.rmtree(own, ignore_errors=True)


_escpos_capabilities_folder()
