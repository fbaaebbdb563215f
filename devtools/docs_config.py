"""The configuration's documentation, generated from its one source: the field docs in
``sidecar/config.py`` (and the reasons' meanings in ``sidecar/reasons.py``).

    python -m devtools.docs_config          # rewrite config.yaml and the README's tables
    python -m devtools.docs_config --check  # exit 1 when either is out of date

What is generated: the committed ``config.yaml`` (every key with its default, commented
with its doc), the README's configuration table (between ``<!-- BEGIN config -->`` and
``<!-- END config -->``) and its table of reasons (``reasons``). tests/config checks both.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from devtools.docs_sections import replace_between
from sidecar.config import SidecarConfig, TuningConfig
from sidecar.reasons import FALLBACK, MEANING, Reason

ROOT = Path(__file__).resolve().parents[1]
CONFIG_YAML = ROOT / "config.yaml"
README = ROOT / "README.md"
WIDTH = 92

HEADER = """\
# rerank-sidecar configuration: the production defaults.
#
# Generated from the field docs in sidecar/config.py (python -m devtools.docs_config); edit
# those, not this file. Every key is optional; these values are also the built-in defaults.
# Override them with
#   - another file:             rerank-sidecar serve --config my.yaml
#   - environment variables:    RERANK_SIDECAR__<SECTION>__<KEY>=value
#                               e.g. RERANK_SIDECAR__ES__TIMEOUTS__READ_S=10
#   - flags:                    --es-url, --host, --port, --model
# (later sources win). Unknown keys and bad values stop the sidecar at start-up with one
# line that names the key, e.g. "config error: es.timeouts.connect_s: ... (got -1)"; a key
# of an earlier version's layout names where it went.
"""

#: Commented examples for the settings that are lists of objects.
EXAMPLES = {
    "rerank.indices": """\
- pattern: "catalogue-*"
  fields: [title, abstract, subjects]    # dotted paths, arrays joined
  template: null                         # or "{title}\\n{abstract}"
  max_chars_per_field: 2000
  window: 30
  budget_ms: 800
  instruction: "Given a library patron's request, retrieve catalogue records that satisfy it"
  score_mode: fusion
  boost_fields: {popularity: 0.1}""",
    "rollout.rules": """\
- name: staff-first
  clients: [10.20.0.0/16, "2001:db8:20::/48"]
  indices: ["catalogue*"]
  percent: 100
  mode: "on\"""",
}


def _doc(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    annotation = field.annotation
    if field.description:
        return field.description
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__doc__ or ""
    return ""


def _words(text: str) -> str:
    """One line, with Markdown's code spans (the docs write reST's double backticks)."""
    return " ".join(text.split()).replace("``", "`")


def _scalar(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    if hasattr(value, "__fspath__"):
        value = str(value)
    dumped = yaml.safe_dump(value, default_flow_style=True, width=1000, allow_unicode=True)
    return dumped.removesuffix("\n...\n").strip()


def _comment(text: str, indent: str) -> list[str]:
    if not text:
        return []
    lines = textwrap.wrap(_words(text), WIDTH - len(indent) - 2)
    return [f"{indent}# {line}" for line in lines]


def yaml_lines(model: type[BaseModel], value: BaseModel, depth: int, path: str) -> Iterator[str]:
    indent = "  " * depth
    for name, field in model.model_fields.items():
        child = getattr(value, name)
        key = f"{path}.{name}" if path else name
        yield from _comment(_doc(model, name), indent)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield f"{indent}{name}:"
            yield from yaml_lines(annotation, child, depth + 1, key)
            continue
        example = EXAMPLES.get(key)
        if example:
            yield f"{indent}# For example:"
            yield from (f"{indent}#   {line}" for line in example.splitlines())
        yield f"{indent}{name}: {_scalar(child)}"
    if depth == 0:
        return


def config_yaml() -> str:
    lines = [HEADER.rstrip("\n")]
    config = SidecarConfig()
    for name in SidecarConfig.model_fields:
        section = SidecarConfig.model_fields[name].annotation
        assert isinstance(section, type) and issubclass(section, BaseModel)
        lines.append("")
        lines += _comment(section.__doc__ or "", "")
        lines.append(f"{name}:")
        lines += yaml_lines(section, getattr(config, name), 1, name)
    return "\n".join(lines) + "\n"


def _shown(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return f"`{_scalar(value)}`"
    if isinstance(value, int) and value >= 1 << 20 and value % (1 << 20) == 0:
        return f"{value >> 20} MiB"
    if isinstance(value, tuple) and not value:
        return "none"
    return f"`{_scalar(value)}`"


def _rows(model: type[BaseModel], value: BaseModel, path: str) -> Iterator[tuple[str, str, str]]:
    for name, field in model.model_fields.items():
        key = f"{path}.{name}" if path else name
        annotation = field.annotation
        child = getattr(value, name)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _rows(annotation, child, key)
        else:
            meaning = _words(_doc(model, name)).replace("|", "\\|")
            yield key, _shown(child), meaning


def config_table() -> str:
    config = SidecarConfig()
    product: list[str] = []
    tuning: list[str] = []
    for name in SidecarConfig.model_fields:
        section = SidecarConfig.model_fields[name].annotation
        assert isinstance(section, type) and issubclass(section, BaseModel)
        rows = tuning if name == "tuning" else product
        for key, default, meaning in _rows(section, getattr(config, name), name):
            rows.append(f"| `{key}` | {default} | {meaning} |")
    head = ["| key | default | meaning |", "|---|---|---|"]
    tuning_doc = _words(TuningConfig.__doc__ or "")
    return "\n".join(
        [
            *head,
            *product,
            "",
            f"**Tuning** (`tuning:`). {tuning_doc}",
            "",
            *head,
            *tuning,
        ]
    )


def reasons_table() -> str:
    rows = ["| `X-Rerank` | meaning |", "|---|---|"]
    for reason in Reason:
        status = "fallback" if reason in FALLBACK else "skipped"
        rows.append(f"| `{status}; reason={reason.value}` | {MEANING[reason]} |")
    return "\n".join(rows)


def generated() -> dict[Path, str]:
    readme = README.read_text(encoding="utf-8")
    readme = replace_between(readme, "config", config_table())
    readme = replace_between(readme, "reasons", reasons_table())
    return {CONFIG_YAML: config_yaml(), README: readme}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.docs_config")
    parser.add_argument("--check", action="store_true", help="exit 1 when out of date")
    args = parser.parse_args(argv)
    stale = [p for p, text in generated().items() if p.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: python -m devtools.docs_config")
        return 1 if stale else 0
    for path, text in generated().items():
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
