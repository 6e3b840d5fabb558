"""No failure vanishes: a lint over the project's Python files (run by scripts/check).

Refused, with the file and line:
- a bare `except:`;
- `contextlib.suppress(Exception)` or `suppress(BaseException)` (nothing can be logged);
- an `except Exception` / `except BaseException` (alone or in a tuple) whose handler neither
  re-raises, nor logs (a call to `.exception`, `.error`, `.warning`, `.info` or `.debug` on
  a logger), nor says on its `except` line where the failure goes (`# reported: ...`, e.g.
  "readyz names it").
Narrow handlers (`except OSError`) are the code's business; this rule is about the catch-alls
that hide bugs. Usage: `python scripts/check_excepts.py [paths...]` (default: the packages).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["poold", "accounting", "simulation", "verify.py", "scripts", "bench"]
BROAD = {"Exception", "BaseException"}
LOG_METHODS = {"exception", "error", "warning", "info", "debug", "critical"}


def _names(node: ast.expr | None) -> set[str]:
    if node is None:
        return set()
    if isinstance(node, ast.Tuple):
        return set().union(*(_names(e) for e in node.elts))
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Attribute):
        return {node.attr}
    return set()


def _handles(body: list[ast.stmt]) -> bool:
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Raise):
                return True
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOG_METHODS
            ):
                return True
    return False


def problems(path: Path) -> list[str]:
    text = path.read_text()
    lines = text.splitlines()
    out = []
    for node in ast.walk(ast.parse(text, str(path))):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ExceptHandler):
            if node.type is None:
                out.append(f"{where}: a bare `except:` (name what you catch)")
            elif _names(node.type) & BROAD:
                reported = "# reported:" in lines[node.lineno - 1]
                if not (reported or _handles(node.body)):
                    out.append(
                        f"{where}: `except {ast.unparse(node.type)}` neither re-raises nor logs "
                        "(or says `# reported: where`)"
                    )
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "suppress")
                or (isinstance(node.func, ast.Name) and node.func.id == "suppress")
            )
            and any(_names(a) & BROAD for a in node.args)
        ):
            out.append(f"{where}: `suppress({ast.unparse(node.args[0])})` hides every failure")
    return out


def main(argv: list[str]) -> int:
    targets = [ROOT / a for a in (argv[1:] or DEFAULT)]
    files = [p for t in targets for p in ([t] if t.is_file() else sorted(t.rglob("*.py")))]
    found = [msg for f in files for msg in problems(f)]
    for msg in found:
        print(msg, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
