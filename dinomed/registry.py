"""A named registry of classes (timm's ``register_model`` idea): modality presets, task heads, layout converters.

Example:
    >>> HEADS = Registry("task", "tasks", attribute="task")
    >>> @HEADS.register("seg")
    ... class SegmentationHead: ...
    >>> HEADS.get("seg")  # errors list the registered names
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Name -> class; registering sets the class attribute ``attribute`` to its name, and refuses duplicates."""

    def __init__(self, kind: str, plural: str, *, attribute: str = "name") -> None:
        self.kind, self.plural, self.attribute = kind, plural, attribute
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

    def get(self, name: str) -> T:
        """The class registered as ``name``; an unknown name fails listing the valid ones."""
        if name not in self._classes:
            raise ValueError(f"unknown {self.kind} '{name}'; valid {self.plural} are {self.names()}")
        return self._classes[name]

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
