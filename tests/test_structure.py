"""The package stays small and flat: no module over 600 lines, no function over 80 (issue 17)."""

from __future__ import annotations

import ast
from pathlib import Path

import poseprior

PACKAGE = Path(poseprior.__file__).parent


def test_no_module_over_600_lines_and_no_function_over_80() -> None:
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        if source.count("\n") > 600:
            too_long.append(f"{path.relative_to(PACKAGE)}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    too_long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "split these:\n" + "\n".join(too_long)
