"""Personal data: its lifecycle here (re-encrypt, purge, erase) and erasure at the providers."""
