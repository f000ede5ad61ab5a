"""Run reports: collapse-diagnostic plots and the self-contained HTML report of a pretraining run."""
