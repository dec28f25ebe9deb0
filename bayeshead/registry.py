"""Name -> component registries: ``ADAPTERS``, ``HEADS``, ``METHODS``, ``OPTIMIZERS``, ``TASKS``,
``BACKBONES``.

Three ways an entry gets into a registry:

1. ``@HEADS.register("name", description=..., config=MyConfig)`` on a class or factory;
2. built-ins, declared in :mod:`bayeshead._builtins` as ``name -> (module, description)``
   and imported only when first used (so ``import bayeshead`` stays light);
3. third-party packages, through the entry-point groups ``bayeshead.heads``,
   ``bayeshead.adapters``, ``bayeshead.optimizers`` and ``bayeshead.tasks``.
   (and ``bayeshead.methods``, ``bayeshead.backbones``). The entry point's object is loaded on first use; if loading it did not register
   the name itself, the loaded object is registered under the entry-point name.

Unknown and duplicate names raise :class:`RegistryError`, which lists the known names.
This module imports nothing from the rest of bayeshead except the built-in table.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bayeshead._builtins import BUILTINS
from bayeshead.errors import UserInputError

T = TypeVar("T")


class RegistryError(UserInputError, KeyError):
    """An unknown or duplicate registry name."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


@dataclass
class Entry:
    """One registered component: the object, its description and its config class."""

    name: str
    obj: Any
    description: str
    config: type | None


def _first_doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """A family of named components (heads, adapters, optimizers or tasks)."""

    def __init__(self, family: str, entry_point_group: str) -> None:
        self.family = family
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Entry] = {}
        self._lazy: dict[str, tuple[str, str]] = dict(BUILTINS.get(family, {}))
        self._plugins: dict[str, importlib.metadata.EntryPoint] | None = None

    # -- registration --------------------------------------------------------------------
    def register(
        self,
        name: str,
        *,
        description: str | None = None,
        config: type | None = None,
    ) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``.

        ``config`` is the pydantic model that validates this entry's section of an
        :class:`~bayeshead.config.ExperimentConfig`; when omitted, ``obj.Config`` is used
        if it exists. ``description`` defaults to the first line of the docstring.
        """

        def decorator(obj: T) -> T:
            self.add(name, obj, description=description, config=config)
            return obj

        return decorator

    def add(
        self, name: str, obj: Any, *, description: str | None = None, config: type | None = None
    ) -> None:
        """Register ``obj`` under ``name`` (the non-decorator form of :meth:`register`)."""
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.family} names must be non-empty strings, got {name!r}")
        if name in self._entries:
            raise RegistryError(
                f"{self.family} {name!r} is already registered (by {self._entries[name].obj!r}); "
                f"pick another name. Registered {self.family}: {', '.join(self.names())}"
            )
        desc = description or _first_doc_line(obj) or f"{self.family[:-1]} {name}"
        cfg = config if config is not None else getattr(obj, "Config", None)
        self._entries[name] = Entry(name=name, obj=obj, description=desc, config=cfg)

    # -- lookup ---------------------------------------------------------------------------
    def _plugin_points(self) -> dict[str, importlib.metadata.EntryPoint]:
        if self._plugins is None:
            found = importlib.metadata.entry_points(group=self.entry_point_group)
            self._plugins = {ep.name: ep for ep in found}
        return self._plugins

    def names(self) -> list[str]:
        """Every known name (registered, built-in or plugin), sorted; imports nothing."""
        return sorted(set(self._entries) | set(self._lazy) | set(self._plugin_points()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def _unknown(self, name: str) -> RegistryError:
        known = ", ".join(self.names()) or "(none)"
        return RegistryError(
            f"unknown {self.family[:-1]} {name!r}. Known {self.family}: {known}. "
            f"Third-party {self.family} register through the entry-point group "
            f"{self.entry_point_group!r}."
        )

    def entry(self, name: str) -> Entry:
        """The :class:`Entry` for ``name``, importing its module on first use."""
        if name in self._entries:
            return self._entries[name]
        if name in self._lazy:
            module, _ = self._lazy[name]
            importlib.import_module(module)
            if name not in self._entries:
                raise RegistryError(
                    f"built-in {self.family[:-1]} {name!r} is declared in module {module!r} "
                    "but importing it did not register it (bayeshead bug)"
                )
            return self._entries[name]
        point = self._plugin_points().get(name)
        if point is None:
            raise self._unknown(name)
        obj = point.load()
        if name not in self._entries:  # the plugin did not self-register: use the object
            self.add(name, obj)
        return self._entries[name]

    def get(self, name: str) -> Any:
        """The registered class or factory."""
        return self.entry(name).obj

    def config_class(self, name: str) -> type | None:
        """The pydantic model validating ``name``'s config section (None when it has none)."""
        return self.entry(name).config

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the registered class or factory with the given arguments."""
        return self.get(name)(*args, **kwargs)

    def describe(self) -> list[tuple[str, str]]:
        """``(name, description)`` for every entry. Built-ins are described without import;
        plugins are loaded to read their description."""
        rows = []
        for name in self.names():
            if name in self._entries:
                rows.append((name, self._entries[name].description))
            elif name in self._lazy:
                rows.append((name, self._lazy[name][1]))
            else:
                rows.append((name, self.entry(name).description))
        return rows

    def __repr__(self) -> str:
        return f"Registry({self.family!r}, names={self.names()})"


ADAPTERS = Registry("adapters", "bayeshead.adapters")
HEADS = Registry("heads", "bayeshead.heads")
METHODS = Registry("methods", "bayeshead.methods")
OPTIMIZERS = Registry("optimizers", "bayeshead.optimizers")
TASKS = Registry("tasks", "bayeshead.tasks")
BACKBONES = Registry("backbones", "bayeshead.backbones")

REGISTRIES: dict[str, Registry] = {
    "adapters": ADAPTERS,
    "heads": HEADS,
    "methods": METHODS,
    "optimizers": OPTIMIZERS,
    "tasks": TASKS,
    "backbones": BACKBONES,
}
