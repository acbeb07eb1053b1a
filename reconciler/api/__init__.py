"""The JSON API for the product backend, operators and auditors (DESIGN §3)."""
