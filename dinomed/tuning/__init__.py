"""Optuna tuning of label-scarce fine-tuning: grouped CV inside the label budget, pruning, test touched once."""
