"""Frozen-backbone evaluation: feature cache, weighted kNN, linear probe, attention maps and patch PCA.

Modules are imported where used (``dinomed.eval.knn`` ...) so that loading a recipe stays light.
"""
