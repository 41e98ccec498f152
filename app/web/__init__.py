"""The shopper's website, which installs on a phone as an app: pages over the same API."""
