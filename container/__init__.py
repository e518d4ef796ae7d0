"""Everything that builds, runs, publishes and launches the training image."""
