"""The kiosk daemon: it sits next to the kiosk tablet's NFC reader, reads the taps of product
tags, shelf signs and shoppers' cards, and reports each one to the API as the kiosk device.
The tablet's screen follows the kiosk's event stream on its own (the /kiosk page)."""
