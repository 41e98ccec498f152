"""Offline allowances: card money a till may take while the API is out of its reach."""
