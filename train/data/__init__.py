"""Dataset tools (synth, pack, inspect) beside the RecordIO readers that consume their output."""
