"""The algorithm: the job, hyperparameters, channel readers, model factory, recipes, the training loop, export."""
