"""template.yaml as the benchmark reads it: the stack is measured as it ships."""

from __future__ import annotations

from typing import Any

import yaml

from bench.report import ROOT


def template() -> dict[str, Any]:
    """template.yaml with every intrinsic (``!Ref``, ``!Sub``, ...) read as None."""

    class Loader(yaml.SafeLoader):
        pass

    def any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        return None

    Loader.add_multi_constructor("!", any_tag)  # type: ignore[no-untyped-call]
    loaded: dict[str, Any] = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)
    return loaded


def template_defaults() -> dict[str, Any]:
    return {name: p.get("Default") for name, p in template()["Parameters"].items()}
