"""Dataset tools users run before any job: synth, pack, inspect (no MXNet, GluonCV or training toolkit)."""
