"""Generate the reference pages under ``docs/reference/`` from the code.

    python docs/gen_reference.py           # rewrite docs/reference/configuration.md and cli.md
    python docs/gen_reference.py --check   # exit 1 (naming the stale files) if they differ

``configuration.md`` documents every pydantic config model: the sections of
:class:`bayeshead.config.ExperimentConfig`, the config of every built-in entry of every registry
(adapters, heads, methods, optimizers, tasks) and the benchmark suite files (``SuiteConfig``,
``MethodSpec``). ``cli.md`` documents every command of ``bayeshead`` from its argparse parser.
The output does not depend on the terminal, the working directory or installed plugins.
``tests/test_docs_reference.py`` fails when the committed pages are stale.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import re
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from bayeshead.bench.suite import MethodSpec, SuiteConfig
from bayeshead.bench.tune_config import MethodTuning, TuneConfig
from bayeshead.cli.main import build_parser
from bayeshead.config import (
    BackboneConfig,
    ComponentConfig,
    EvaluationConfig,
    ExperimentConfig,
    TrainingConfig,
)
from bayeshead.registry import REGISTRIES, Registry

DOCS = Path(__file__).resolve().parent
REFERENCE = DOCS / "reference"
COMMAND = "python docs/gen_reference.py"
HEADER = f"% Generated from the code by `{COMMAND}`; do not edit by hand.\n\n"
HELP_WIDTH = 88  # argparse usage lines are wrapped at this width, whatever the terminal

# -- markdown helpers -----------------------------------------------------------------------


def escape(text: str) -> str:
    """Text for a table cell: pipes escaped everywhere (GFM tables need it inside code spans
    too), ``$`` and ``*`` escaped outside code spans (dollar math, emphasis), one line."""
    parts = re.split(r"(`[^`]*`)", " ".join(text.split()))
    out = [p if p.startswith("`") else re.sub(r"([$*\\<])", r"\\\1", p) for p in parts]
    return "".join(out).replace("|", r"\|")


def code(text: str) -> str:
    """An inline code span for a table cell."""
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", r"\|")


def tidy(text: str) -> str:
    """At most one blank line in a row; one newline at the end."""
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# -- pydantic fields ------------------------------------------------------------------------

_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_BOUND_TYPES = (annotated_types.Gt, annotated_types.Ge, annotated_types.Lt, annotated_types.Le, annotated_types.Interval)


def _constraints(metadata: Sequence[Any]) -> list[str]:
    """``["> 0"]``, ``[">= 0.0", "< 1.0"]``, ``["length >= 1"]`` from annotated-types metadata."""
    out = []
    for item in metadata:
        if isinstance(item, _BOUND_TYPES):
            out += [f"{sign} {getattr(item, a)}" for a, sign in _BOUNDS.items() if getattr(item, a, None) is not None]
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            out.append(f"length >= {item.min_length}")
        if isinstance(item, annotated_types.MaxLen):
            out.append(f"length <= {item.max_length}")
        if isinstance(item, FieldInfo):  # an Annotated[..., Field(...)] inside a union
            out += _constraints(item.metadata)
    return out


def type_name(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """A readable type: ``int > 0 | None``, ``"cls" | "mean"``, ``list[str]``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0], [*args[1:], *metadata])
    bounds = _constraints(list(metadata))
    suffix = (" " + ", ".join(bounds)) if bounds else ""
    if annotation is type(None) or annotation is None:
        return "None"
    if origin is typing.Literal:
        return " | ".join(repr(a).replace("'", '"') for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        if type(None) in args:
            names.append("None")
        return " | ".join(names) + suffix
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]{suffix}"
    if isinstance(annotation, type):
        return annotation.__name__ + suffix
    return str(annotation) + suffix


def default_value(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()
    return field.default


def yaml_value(value: Any) -> str:
    """A value as written in YAML and in ``--set key=value`` overrides."""
    if isinstance(value, BaseModel):
        return yaml_value(value.model_dump(mode="json"))
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def field_rows(model: type[BaseModel], prefix: str = "", skip: tuple[str, ...] = ("kind",)) -> list[list[str]]:
    rows = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        if field.is_required():
            default = "required"
        else:
            default = code(yaml_value(default_value(field)))
        rows.append(
            [
                code(prefix + name),
                code(type_name(field.annotation, field.metadata)),
                default,
                escape(rst_to_md(field.description or "")),
            ]
        )
    return rows


def fields_table(model: type[BaseModel], prefix: str = "", skip: tuple[str, ...] = ("kind",)) -> str:
    rows = field_rows(model, prefix, skip)
    if not rows:
        return "No options besides `kind`.\n"
    return table(["key", "type", "default", "description"], rows)


def rst_to_md(text: str) -> str:
    """Docstring markup as markdown: ``:class:`~a.B``` -> `` `B` ``, double backticks -> single."""
    text = re.sub(r":\w+:`~[\w.]*?(\w+)`", r"`\1`", text)
    text = re.sub(r":\w+:`([^`]+)`", r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def first_doc_line(obj: Any) -> str:
    """The first paragraph of a docstring, on one line, as markdown."""
    doc = (obj.__doc__ or "").strip()
    return rst_to_md(" ".join(doc.split("\n\n")[0].split())) if doc else ""


def qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# -- configuration.md -----------------------------------------------------------------------

_FAMILIES = {  # registry -> (section heading, experiment section)
    "adapters": ("Adapters", "adapter"),
    "heads": ("Heads", "head"),
    "methods": ("Methods", "method"),
    "optimizers": ("Optimizers", "optimizer"),
    "tasks": ("Tasks", "task"),
}


def builtin_entries(registry: Registry) -> list[tuple[str, str, type]]:
    """``(name, description, config class)`` of every entry bayeshead itself registers.

    Entries of installed plugins are left out, so that the page does not depend on the
    environment; ``bayeshead list`` shows them."""
    out = []
    for name in registry.names():
        entry = registry.entry(name)
        module = getattr(entry.obj, "__module__", "") or ""
        if module == "bayeshead" or module.startswith("bayeshead."):
            out.append((name, entry.description, entry.config))
    return out


def _section_kind(field: FieldInfo, section: str) -> str:
    value = default_value(field)
    if isinstance(value, ComponentConfig):
        return f"kind {code(value.kind)} with its defaults"
    if value is None:
        return "none"
    return f"see [{section}](#{section})"


def experiment_table() -> str:
    family_of = {section: family for family, (_title, section) in _FAMILIES.items()}
    rows = []
    for name, field in ExperimentConfig.model_fields.items():
        if name in family_of:
            title = _FAMILIES[family_of[name]][0]
            what = f"one of the [{title.lower()}](#{title.lower()}), chosen by `{name}.kind`"
        else:
            annotation = field.annotation
            what = f"{code(annotation.__name__)}, see [{name}](#{name})"
        optional = type(None) in typing.get_args(field.annotation)
        rows.append([code(name), what + (" (optional)" if optional else ""), _section_kind(field, name)])
    return table(["section", "what", "default"], rows)


def component_sections(family: str) -> Iterator[str]:
    title, section = _FAMILIES[family]
    registry = REGISTRIES[family]
    entries = builtin_entries(registry)
    yield f"## {title}\n\n"
    yield (
        f"The `{section}` section names one of the {family} by `{section}.kind`; its other keys are "
        f"validated by that entry's config model. Registry `bayeshead.registry.{family.upper()}`, "
        f"entry-point group `{registry.entry_point_group}`.\n\n"
    )
    yield table(
        ["kind", "description", "config model"],
        [[code(name), escape(rst_to_md(desc)), code(cfg.__name__) if cfg else "none"] for name, desc, cfg in entries],
    )
    # entries whose options are the same (every QA task) share one table
    groups: dict[str, list[tuple[str, str, type]]] = {}
    for name, desc, cfg in entries:
        options = fields_table(cfg, f"{section}.") if cfg else "No config model.\n"
        groups.setdefault(options, []).append((name, desc, cfg))
    for options, members in groups.items():
        names = [name for name, _, _ in members]
        yield "\n### " + ", ".join(f"`{name}`" for name in names) + "\n\n"
        if len(members) == 1:
            name, desc, cfg = members[0]
            yield f"{escape(rst_to_md(desc))}\n\n"
            if cfg is not None:
                yield f"Config model `{qualname(cfg)}`; select it with `--set {section}.kind={name}`.\n\n"
        else:
            yield f"These {len(members)} {family} take the same options; select one with `--set {section}.kind=NAME`.\n\n"
        yield options


def render_configuration() -> str:
    out = [
        "# Configuration reference\n\n",
        HEADER,
        "Every option of an experiment config and of a benchmark suite file, with its type, default "
        "and meaning, as declared by the pydantic models in the code. Every model forbids unknown "
        "keys, so a misspelt key is an error that names it.\n\n",
        "## Setting values\n\n",
        "An experiment config is a YAML (or JSON) file with one mapping per section; omitted keys "
        "take their defaults:\n\n",
        "```yaml\n"
        "backbone: {max_length: 64}\n"
        "adapter: {kind: polar, rank: 8, target_modules: [query, value]}\n"
        "head: {kind: vbll_classification, prior_scale: 30, covariance: diagonal}\n"
        "optimizer: {kind: riemannian_adam, lr: 0.001}\n"
        "training: {epochs: 2, batch_size: 16}\n"
        "```\n\n",
        "Any key can be overridden on the command line with `--set section.key=value` (repeatable), "
        "for example `--set head.prior_scale=30`; the value is read as YAML (`3` is an int, `1e-3` "
        "a float, `true` a bool, `[query, value]` a list, `null` None). A section without `kind` keeps "
        "the default kind (`--set optimizer.lr=1e-4` tunes the default `adamw`).\n\n",
        "```bash\n"
        "bayeshead validate exp.yaml --set head.prior_scale=30 --set training.epochs=3   # print it resolved\n"
        "bayeshead train exp.yaml --output runs/exp --set head.kind=laplace\n"
        "```\n\n",
        "The same from Python (`load_config(path=None, overrides=...)` starts from the defaults):\n\n",
        "```python\n"
        "from bayeshead.config import load_config\n\n"
        'config = load_config(overrides=["head.kind=vbll_classification", "head.prior_scale=30"])\n'
        "print(config.head.prior_scale, config.optimizer.kind)  # 30.0 adamw\n"
        "```\n\n",
        "In the tables, a type such as `int > 0 | None` is a positive integer or `null`; defaults are "
        "written as YAML.\n\n",
        "## Experiment sections\n\n",
        f"`{qualname(ExperimentConfig)}`: {escape(first_doc_line(ExperimentConfig))}\n\n",
        experiment_table(),
    ]
    for name, model in (("backbone", BackboneConfig), ("training", TrainingConfig), ("evaluation", EvaluationConfig)):
        out += [
            f"\n## {name}\n\n",
            f"`{qualname(model)}`: {escape(first_doc_line(model))}\n\n",
            fields_table(model, f"{name}."),
        ]
    out += [
        "\n## Packaged backbones\n\n",
        "Short names for `backbone.name_or_path` (registry `bayeshead.registry.BACKBONES`): pretrained "
        "causal LMs shipped as GGUF files inside PyPI packages, dequantized once into a user cache; see "
        "[Real causal LMs offline](../causal-lms.md).\n\n",
        table(
            ["name", "description"],
            [[code(name), escape(desc)] for name, desc, _ in builtin_entries(REGISTRIES["backbones"])],
        ),
    ]
    for family in _FAMILIES:
        out.append("\n")
        out += list(component_sections(family))
    out += [
        "\n## Benchmark suites\n\n",
        "A suite file (`bayeshead bench run my_suite.yaml`) is a `SuiteConfig`; each entry of its "
        "`methods` list is a `MethodSpec`, whose `overrides` are `--set` strings applied on top of "
        "the suite's `base`.\n\n",
        "```yaml\n"
        "name: my-suite\n"
        "base: [backbone.max_length=64, adapter.rank=8, training.epochs=2]\n"
        "seeds: [0, 1, 2]\n"
        "methods:\n"
        "  - {name: lora+mle, overrides: [adapter.kind=lora, head.kind=deterministic]}\n"
        "  - {name: lora+ensemble, overrides: [adapter.kind=lora, method.kind=ensemble, method.members=3]}\n"
        "```\n\n",
        "### SuiteConfig\n\n",
        f"`{qualname(SuiteConfig)}`\n\n",
        fields_table(SuiteConfig, skip=()),
        "\n### MethodSpec\n\n",
        f"`{qualname(MethodSpec)}`: {escape(first_doc_line(MethodSpec))}\n\n",
        fields_table(MethodSpec, skip=()),
        "\n### TuneConfig\n\n",
        f"`{qualname(TuneConfig)}`: the `tune:` section, read by `bayeshead bench tune` "
        "(see benchmarks.md, \"Tuning on validation data\").\n\n",
        fields_table(TuneConfig, skip=()),
        "\n### MethodTuning\n\n",
        f"`{qualname(MethodTuning)}`: {escape(first_doc_line(MethodTuning))}\n\n",
        fields_table(MethodTuning, skip=()),
    ]
    return tidy("".join(out))


# -- cli.md ---------------------------------------------------------------------------------


def _fixed_width(parser: argparse.ArgumentParser) -> None:
    """Format help at a fixed width without colour, whatever the terminal."""
    parser.formatter_class = functools.partial(argparse.HelpFormatter, width=HELP_WIDTH)
    if hasattr(parser, "color"):  # Python >= 3.14
        parser.color = False


def commands(parser: argparse.ArgumentParser, help_text: str = "") -> Iterator[tuple[argparse.ArgumentParser, str]]:
    """Every parser, depth first: ``bayeshead``, ``bayeshead list``, ..., ``bayeshead bench run``."""
    _fixed_width(parser)
    yield parser, help_text
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield from commands(sub, helps.get(name, ""))


def _invocation(formatter: argparse.HelpFormatter, action: argparse.Action) -> str:
    return formatter._format_action_invocation(action)


def _default(action: argparse.Action) -> str:
    default = action.default
    if not action.option_strings or default is None or default is False or default in ([], argparse.SUPPRESS):
        return ""
    return code(str(default))


def argument_tables(parser: argparse.ArgumentParser) -> Iterator[str]:
    formatter = parser._get_formatter()
    for group in parser._action_groups:
        actions = [
            a
            for a in group._group_actions
            if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction) and a.help != argparse.SUPPRESS
        ]
        if not actions:
            continue
        title = {"optional arguments": "options"}.get(group.title, group.title)
        rows = [
            [code(_invocation(formatter, a)), escape(formatter._expand_help(a) if a.help else ""), _default(a)]
            for a in actions
        ]
        yield f"{title[0].upper()}{title[1:]}:\n\n"
        yield table(["argument", "help", "default"], rows) + "\n"


def render_cli() -> str:
    parser = build_parser()
    out = [
        "# Command-line reference\n\n",
        HEADER,
        "The `bayeshead` console script (also `python -m bayeshead.cli.main`, which is what "
        "`torchrun` runs). Every command takes `-h`/`--help`. Invalid arguments or configs print the "
        "problem without a traceback and exit with status 2. Config keys for `--set` are listed in "
        "the [configuration reference](configuration.md).\n\n",
    ]
    subcommands = []
    for sub, help_text in commands(parser):
        if sub is parser:
            continue
        subcommands.append((sub, help_text))
    out.append(table(["command", "what it does"], [[f"[{code(s.prog)}](#{_slug(s.prog)})", escape(h)] for s, h in subcommands]))
    for sub, help_text in [(parser, parser.description or ""), *subcommands]:
        out += [
            f"\n## `{sub.prog}`\n\n",
            f"{escape(help_text)}\n\n" if help_text else "",
            "```text\n" + sub.format_usage().strip() + "\n```\n\n",
        ]
        out += list(argument_tables(sub))
    return tidy("".join(out))


def _slug(text: str) -> str:
    """The anchor MyST gives a heading ``## `text` `` (``myst_heading_anchors``)."""
    return re.sub(r"[^\w\- ]", "", text.lower()).strip().replace(" ", "-")


# -- main -----------------------------------------------------------------------------------

PAGES = {"configuration.md": render_configuration, "cli.md": render_cli}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a page is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, render in PAGES.items():
        path = REFERENCE / name
        text = render()
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current == text:
            continue
        stale.append(path)
        if args.check:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True), text.splitlines(keepends=True),
                f"docs/reference/{name} (committed)", f"docs/reference/{name} (from the code)", n=1,
            )
            sys.stdout.writelines(list(diff)[:60])
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote docs/reference/{name}")
    if args.check and stale:
        names = ", ".join(f"docs/reference/{p.name}" for p in stale)
        print(f"\n{names} out of date with the code; regenerate with: {COMMAND}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
