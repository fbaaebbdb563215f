"""The configuration is documented once, in sidecar/config.py's field docs: config.yaml and
the README's tables are generated from them (and from sidecar/reasons.py) and must match."""

from __future__ import annotations

from pydantic import BaseModel

from devtools.docs_config import generated, main
from sidecar.config import SidecarConfig


def test_config_yaml_and_the_readme_are_what_the_field_docs_generate() -> None:
    stale = [str(path) for path, text in generated().items() if path.read_text() != text]
    assert stale == [], "run: python -m devtools.docs_config"
    assert main(["--check"]) == 0


def test_every_setting_is_documented() -> None:
    missing: list[str] = []

    def walk(model: type[BaseModel], path: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{path}{name}.")
            elif not field.description:
                missing.append(f"{path}{name}")

    walk(SidecarConfig, "")
    assert missing == []
