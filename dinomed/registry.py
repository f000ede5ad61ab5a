"""Named registries (timm's ``register_model`` idea): the only lists of modalities, task heads and layouts.

Recipes and dataset cards validate names against these registries, so a modality or head registered by a
plug-in (``@register_modality("ultrasound")``) is as valid in a recipe as a built-in one. Each registry knows
the module holding its built-ins and imports it on first lookup, so reading a recipe does not load the image
backend or MONAI.

Example:
    >>> @TASK_HEADS.register("edges")
    ... class EdgeHead(TaskHead): ...
    >>> TASK_HEADS.get("edges")  # errors list the registered names
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T", bound=type)

__all__ = ["Registry", "MODALITIES", "TASK_HEADS", "LAYOUTS"]


class Registry(Generic[T]):
    """Name -> class; registering sets the class attribute ``attribute`` to its name, and refuses duplicates.

    ``builtins`` names the module whose import registers the built-in entries; it is imported on first lookup.
    """

    def __init__(self, kind: str, plural: str, *, attribute: str = "name", builtins: str | None = None) -> None:
        self.kind, self.plural, self.attribute, self.builtins = kind, plural, attribute, builtins
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator adding the class under ``name``."""

        def decorate(cls: T) -> T:
            if name in self._classes:
                raise ValueError(f"{self.kind} '{name}' is already registered by {self._classes[name].__name__}")
            setattr(cls, self.attribute, name)
            self._classes[name] = cls
            return cls

        return decorate

    def unregister(self, name: str) -> None:
        """Remove ``name`` (e.g. to redefine a plug-in class when a notebook cell runs again)."""
        self._loaded()
        if name not in self._classes:
            raise ValueError(f"unknown {self.kind} '{name}'; valid {self.plural} are {self.names()}")
        del self._classes[name]

    def _loaded(self) -> dict[str, T]:
        if self.builtins is not None:
            importlib.import_module(self.builtins)  # registers the built-ins (a no-op once imported)
        return self._classes

    def get(self, name: str) -> T:
        """The class registered as ``name``; an unknown name fails listing the valid ones."""
        classes = self._loaded()
        if name not in classes:
            raise ValueError(f"unknown {self.kind} '{name}'; valid {self.plural} are {self.names()}")
        return classes[name]

    def names(self) -> list[str]:
        return sorted(self._loaded())

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


MODALITIES: Registry[Any] = Registry("modality", "modalities", builtins="dinomed.augment.modalities")
"""Modality presets (:mod:`dinomed.augment.modalities`): a recipe's ``modality``."""
TASK_HEADS: Registry[Any] = Registry("task", "tasks", attribute="task", builtins="dinomed.finetuning.heads")
"""Fine-tuning task heads with their loss and metrics (:mod:`dinomed.finetuning.heads`): ``finetune.task``."""
LAYOUTS: Registry[Any] = Registry("layout converter", "layout converters", builtins="dinomed.catalogue.layouts")
"""On-disk dataset layouts (:mod:`dinomed.catalogue.layouts`): a dataset card's ``converter``."""
