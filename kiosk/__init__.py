"""The in-store NFC product kiosk daemon."""
