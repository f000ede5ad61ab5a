"""End to end on a tiny in-memory dataset: random-init baseline, cache reuse, k clipping, linear probe, JSON."""

from __future__ import annotations

import json

import pytest

from dinomed.api import evaluate

SPLITS = {"train": list(range(0, 16)), "val": list(range(16, 20)), "test": list(range(20, 24))}


def test_knn_random_baseline_then_cached(stripes, tiny_recipe, tmp_path, transform) -> None:
    kwargs = dict(dataset=stripes, splits=SPLITS, transform=transform, out=tmp_path / "knn.json")
    with pytest.warns(UserWarning, match="k=20 exceeds the 16 training samples"):
        first = evaluate("oct", backbone="random", method="knn", overrides=tiny_recipe, **kwargs)
    assert first.params["k"] == 16 and first.params["k_requested"] == 20 and not first.cached
    assert set(first.metrics) == {"val", "test"} and first.split_sizes == {"train": 16, "val": 4, "test": 4}
    test = first.metrics["test"]
    assert 0.0 <= test["balanced_accuracy"] <= 1.0 and set(test["per_class_recall"]) == set(stripes.class_names)
    second = evaluate("oct", backbone="random", method="knn", overrides=[*tiny_recipe, "eval.knn_k=3"], **kwargs)
    assert second.cached and second.params["k"] == 3
    assert json.loads((tmp_path / "knn.json").read_text())["params"]["k"] == 3


def test_linear_probe_learns_the_stripes(stripes, tiny_recipe, transform) -> None:
    result = evaluate("oct", backbone="random", method="linear", overrides=tiny_recipe, dataset=stripes, splits=SPLITS,
                      transform=transform)
    assert result.params["best_lr"] in (0.01, 0.1)
    assert result.metrics["test"]["top1"] >= 0.75  # stripe period is linearly decodable even from random features


def test_errors_are_actionable(stripes, tiny_recipe, transform) -> None:
    with pytest.raises(ValueError, match="valid methods are"):
        evaluate("oct", backbone="random", method="svm", overrides=tiny_recipe, dataset=stripes, splits=SPLITS,
                 transform=transform)
    with pytest.raises(ValueError, match="pass a recipe"):
        evaluate(backbone="random", method="knn")
    empty = {"train": SPLITS["train"], "val": [], "test": []}
    with pytest.raises(ValueError, match="val and the test split are empty"):
        evaluate("oct", backbone="random", method="knn", overrides=tiny_recipe, dataset=stripes, splits=empty,
                 transform=transform)
