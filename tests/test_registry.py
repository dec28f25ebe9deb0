"""Registries: decorator registration, lazy built-ins, helpful errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bayeshead.registry import HEADS, REGISTRIES, Registry, RegistryError


def test_register_create_and_describe():
    reg = Registry("widgets", "bayeshead.test-widgets")

    @reg.register("square", description="squares a number")
    def square(x):
        return x * x

    @reg.register("cube")
    def cube(x):
        """Cubes a number."""
        return x**3

    assert reg.names() == ["cube", "square"]
    assert reg.create("square", 3) == 9 and reg.get("cube")(2) == 8
    assert dict(reg.describe()) == {"cube": "Cubes a number.", "square": "squares a number"}
    assert "cube" in reg and "nope" not in reg


def test_unknown_and_duplicate_names_list_the_known_ones():
    reg = Registry("widgets", "bayeshead.test-widgets")
    reg.add("alpha", object)
    reg.add("beta", object)
    with pytest.raises(RegistryError, match=r"unknown widget 'gamma'\. Known widgets: alpha, beta"):
        reg.get("gamma")
    with pytest.raises(RegistryError, match=r"'alpha' is already registered .* alpha, beta"):
        reg.add("alpha", dict)


def test_every_family_exists_and_builtins_resolve():
    assert set(REGISTRIES) == {"adapters", "heads", "methods", "optimizers", "tasks", "backbones"}
    for family, registry in REGISTRIES.items():
        for name in registry._lazy:  # every declared built-in really registers itself
            entry = registry.entry(name)
            if family == "backbones":  # packaged models: a name_or_path, not a config section
                assert entry.name == name and entry.obj.name == name, (family, name)
                continue
            assert entry.name == name and entry.config is not None, (family, name)
            assert entry.config.model_fields["kind"].default == name
    assert "deterministic" in HEADS.names()


def test_importing_bayeshead_is_light():
    code = (
        "import sys, bayeshead\n"
        "from bayeshead.registry import HEADS\n"
        "HEADS.names(); HEADS.describe()\n"
        "heavy = [m for m in ('transformers', 'geoopt', 'torch') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
