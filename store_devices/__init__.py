"""The in-store devices the till and the kiosk share: the NFC reader (nfcpy) and a simulated
NFC Forum Type 2 tag for demos and tests. Nothing here imports the till or the kiosk."""
