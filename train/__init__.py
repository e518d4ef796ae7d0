"""The algorithm: hyperparameters, data readers and dataset tools, model factory, training loops, export."""
