"""deeplens room (filled in by later issues)."""
