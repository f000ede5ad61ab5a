"""Recipes: the root config that composes every section, YAML loading, the ``--quick`` profile and the catalogue.

A recipe is a YAML file (``recipes/oct.yaml``) or a built-in name (``oct``). Loading order: recipe file, then
the quick profile when asked (``recipes/profiles/quick.yaml``), then ``--set`` overrides, then validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from dinomed.augment.config import AugmentConfig
from dinomed.config import ConfigError, Overrides, apply_overrides, deep_merge, from_dict, load_yaml, option, to_dict
from dinomed.data.config import DataConfig
from dinomed.eval.config import EvalConfig
from dinomed.finetuning.config import FinetuneConfig
from dinomed.models.config import ModelConfig
from dinomed.ssl.config import DINOConfig, OptimConfig, TrainConfig
from dinomed.registry import MODALITIES
from dinomed.tuning.config import TuneConfig

# Shipped inside the package (a wheel has them too); the repository's top-level recipes/ is a link to this folder.
RECIPES_DIR = Path(str(files("dinomed") / "recipes"))
PROFILES_DIR = RECIPES_DIR / "profiles"


@dataclass
class Recipe:
    """Everything a run needs; each section lives next to the code that uses it."""

    name: str = option("custom", "recipe name, used in run directory names")
    description: str = option("", "one line shown by `dinomed recipes`")
    modality: str = option("natural", "selects the augmentation preset and phantom (any registered modality)",
                           choices=MODALITIES)
    data: DataConfig = option(default_factory=DataConfig)
    augment: AugmentConfig = option(default_factory=AugmentConfig)
    model: ModelConfig = option(default_factory=ModelConfig)
    dino: DINOConfig = option(default_factory=DINOConfig)
    optim: OptimConfig = option(default_factory=OptimConfig)
    train: TrainConfig = option(default_factory=TrainConfig)
    eval: EvalConfig = option(default_factory=EvalConfig)
    finetune: FinetuneConfig = option(default_factory=FinetuneConfig)
    tune: TuneConfig = option(default_factory=TuneConfig)

    def __post_init__(self) -> None:
        try:
            self.tune.distributions(type(self))  # a dotted search-space key must name a key of this schema
        except ValueError as err:
            raise ConfigError("", "tune", str(err)) from None
        self._resolve_adaptation()

    def _resolve_adaptation(self) -> None:
        """Fill the null adaptation settings with the defaults of a continued run (``model.init`` set) or of a run
        from random init; a run directory's ``config.yaml`` then holds the values it actually used. A continued
        run's ``train.freeze_backbone_epochs`` depends on whether the init brings a DINO head, so
        :func:`dinomed.ssl.run.start_pretraining` sets it once the weights are read."""
        continued = self.model.init is not None
        if self.train.freeze_backbone_epochs is None and not continued:  # continued: once the init is read
            self.train.freeze_backbone_epochs = 0
        if self.optim.layer_decay is None:
            self.optim.layer_decay = 0.75 if continued else 1.0
        if self.dino.warmup_teacher_temp_epochs is None:
            self.dino.warmup_teacher_temp_epochs = 0 if continued else min(30, int(0.3 * self.train.epochs))

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, as written to a run's ``config.yaml``."""
        return to_dict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def find_recipe(name_or_path: str | Path) -> Path:
    """Resolve a recipe file path or a built-in name (``oct``) to a file."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    builtin = RECIPES_DIR / f"{Path(str(name_or_path)).stem}.yaml"
    if path.suffix == "" and builtin.is_file():
        return builtin
    names = ", ".join(available_recipes()) or "none"
    raise ConfigError(str(name_or_path), "", f"recipe not found; built-in recipes: {names}")


def available_recipes() -> list[str]:
    """Names of the built-in recipes."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(
    recipe: str | Path | dict[str, Any] | Recipe,
    *,
    overrides: Overrides = None,
    quick: bool = False,
) -> Recipe:
    """Load and validate a recipe: file/name/dict, then the quick profile, then the overrides.

    ``overrides``: ``{"optim.lr": 1e-4}`` (values as given) or ``["optim.lr=1e-4"]`` (values parsed as YAML).
    """
    if isinstance(recipe, Recipe):
        data, source = recipe.to_dict(), "<recipe>"
    elif isinstance(recipe, dict):
        data, source = recipe, "<dict>"
    else:
        path = find_recipe(recipe)
        data, source = load_yaml(path), str(path)
    data = _migrate(data)
    if quick:
        data = deep_merge(data, load_yaml(PROFILES_DIR / "quick.yaml"))
    if overrides:
        data = apply_overrides(Recipe, data, overrides)
        source = f"{source} (with --set overrides)"
    return from_dict(Recipe, data, source=source)


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Read recipes and run directories written before ``train.amp`` became ``train.precision``."""
    train = data.get("train")
    if not isinstance(train, dict) or "amp" not in train:
        return data
    train = {k: v for k, v in train.items() if k != "amp"}
    train.setdefault("precision", "auto" if data["train"]["amp"] else "fp32")
    return {**data, "train": train}
