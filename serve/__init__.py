"""serve room (filled in by later issues)."""
