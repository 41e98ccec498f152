"""The till's devices: the NFC reader, the barcode scanner and the receipt printer.

Each is a thin transport behind a small interface, chosen by the till's config; the simulated
far ends (a tag on nfcpy's udp frontend, a pty scanner, a file printer) run the same library
code paths as the real devices.
"""
