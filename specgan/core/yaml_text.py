"""Edit one scalar of a YAML file's text in place, keeping its comments and layout (what people commit)."""

from __future__ import annotations

import json
import re
from typing import Any

_SPECIAL = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def yaml_scalar(value: Any) -> str:
    """A value as a YAML scalar that reads back as itself (floats keep a dot: YAML reads 1e-4 as text)."""
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exp = text.split("e")
            text = f"{mantissa}.0e{exp}"
        return text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) and value.lower() not in _SPECIAL:
        return value
    return json.dumps(value)  # JSON strings are YAML


def replace_scalar(text: str, key: str, value: Any) -> str:
    """``text`` with the dotted ``key``'s value replaced (block mappings, any depth); KeyError if absent."""
    lines = text.splitlines(keepends=True)
    parts = key.split(".")
    depth, indent, child_indent = 0, -1, -1
    for i in range(len(lines)):
        line = lines[i]
        stripped = line.lstrip(" ")
        if not stripped.strip() or stripped.startswith("#"):
            continue
        here = len(line) - len(stripped)
        if here <= indent:
            break  # left the mapping that should hold the next part
        m = re.match(rf"^({re.escape(parts[depth])}:)(\s*)(.*?)(\s+#.*)?$", stripped.rstrip("\n"))
        if not m or (depth > 0 and here != child_indent):
            continue
        if depth == len(parts) - 1:
            lines[i] = f"{' ' * here}{m.group(1)} {yaml_scalar(value)}{m.group(4) or ''}\n"
            return "".join(lines)
        depth, indent = depth + 1, here
        child_indent = next(len(nl) - len(nl.lstrip(" ")) for nl in lines[i + 1:]
                            if nl.strip() and not nl.lstrip(" ").startswith("#"))
    raise KeyError(key)
