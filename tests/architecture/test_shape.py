"""The shape of the service, checked from the source: small functions, one vocabulary of
reasons (the README's table lists every one), the load machinery in one package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sidecar.reasons import FALLBACK, Reason

ROOT = Path(__file__).resolve().parents[2]
LONGEST = 60


def test_no_function_in_the_service_is_longer_than_60_lines() -> None:
    long = []
    for path in sorted((ROOT / "sidecar").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > LONGEST:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert long == []


def _readme_reasons() -> dict[str, str]:
    """``reason`` -> ``skipped`` or ``fallback``, from the README's table of reasons."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("<!-- BEGIN reasons -->") : text.index("<!-- END reasons -->")]
    rows = re.findall(r"^\| `(skipped|fallback); reason=([a-z_]+)` \|", section, re.MULTILINE)
    return {reason: status for status, reason in rows}


def test_the_readme_lists_every_reason_with_its_status() -> None:
    listed = _readme_reasons()
    assert set(listed) == {r.value for r in Reason}
    for reason in Reason:
        assert listed[reason.value] == ("fallback" if reason in FALLBACK else "skipped")


#: Where a reason is given: every argument that is a reason must be a ``Reason``.
REASON_TAKERS = {"Outcome": 1, "kept": 0, "skipped": 0, "Reask": 0, "Refusal": 0}


def test_no_reason_is_spelled_out_outside_the_vocabulary() -> None:
    """Every outcome, reask and refusal names its reason from the enum, never a string."""
    found = []
    for path in sorted((ROOT / "sidecar").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            at = REASON_TAKERS.get(name)
            args = [*node.args, *(k.value for k in node.keywords if k.arg == "reason")]
            if at is not None and len(args) > at:
                arg = args[at] if at < len(node.args) else args[-1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {arg.value!r}")
    assert found == []
