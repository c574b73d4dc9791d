"""``make bench``: every figure users quote, measured side by side in one run on loopback."""
