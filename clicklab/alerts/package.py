"""``clicklab alerts package``: the Lambda deployment zip.

The zip holds one file, ``lambda_function.py`` (the handler module, byte for byte), so Lambda's default
handler name ``lambda_function.lambda_handler`` works. boto3 is in Lambda's Python runtime already.
"""

from __future__ import annotations

import ast
import sys
import zipfile
from pathlib import Path

from clicklab.alerts import handler
from clicklab.exceptions import ClicklabError

LAMBDA_MODULE = "lambda_function.py"
ALLOWED_THIRD_PARTY = frozenset({"boto3", "botocore"})


def imported_roots(source: str) -> set[str]:
    """Top-level package names a module imports."""
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def check_self_contained(source: str) -> None:
    """Refuse a handler that imports anything but the standard library and boto3."""
    extra = sorted(imported_roots(source) - set(sys.stdlib_module_names) - ALLOWED_THIRD_PARTY - {"__future__"})
    if extra:
        raise ClicklabError(f"{handler.__file__} imports {', '.join(extra)}: the Lambda file may only use the "
                            "standard library and boto3")


def build_zip(out: Path) -> Path:
    """Write the zip (deterministic: fixed timestamp and permissions); return its path."""
    source_path = Path(handler.__file__)
    source = source_path.read_text(encoding="utf-8")
    check_self_contained(source)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = zipfile.ZipInfo(LAMBDA_MODULE, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(info, source)
    return out
