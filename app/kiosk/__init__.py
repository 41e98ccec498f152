"""NFC product kiosks: taps, kiosk sessions, the paired screen, and saving for later."""
