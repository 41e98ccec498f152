"""The cashier's POS terminal program: NFC reader, barcode scanner and receipt printer."""
