"""The help of the commands, found in the code for the catalog.

Typer takes a command's help from its function's docstring and a parameter's from its
``help=`` argument; neither is a ``_("...")`` call, so Babel's extractor does not see them.
``messages`` reads a module's syntax tree and yields them as ``cpsfleet.clihelp`` looks them
up when it prints ``--help``: a docstring cleaned as ``inspect.getdoc`` cleans it, a
``help=`` given as a literal string, for a command made by decorating its function
(``@app.command()``) or by calling the decorator on it (``app.command("list")(roster_list)``).
A help built at run time (an f-string) cannot be
found: write it literal, or mark it ``N_("...")`` where it is made.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

# The decorators whose function's docstring is a command's help: @app.command(),
# @app.callback().
COMMAND_DECORATORS = frozenset({"command", "callback"})


def messages(path: Path) -> Iterator[tuple[int, str]]:
    """Each help in the module at ``path``: its line and its text."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    registered = _registered(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield from _help_argument(node)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name in registered or _is_command(node):
                docstring = ast.get_docstring(node, clean=True)
                if docstring:
                    yield node.body[0].lineno, docstring


def _registered(tree: ast.Module) -> set[str]:
    """The functions made commands by a call, ``app.command("list")(roster_list)``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Call):
            if _is_command_decorator(node.func.func):
                names |= {arg.id for arg in node.args if isinstance(arg, ast.Name)}
    return names


def _help_argument(call: ast.Call) -> Iterator[tuple[int, str]]:
    for keyword in call.keywords:
        value = keyword.value
        if keyword.arg == "help" and isinstance(value, ast.Constant):
            if isinstance(value.value, str) and value.value.strip():
                yield value.lineno, inspect.cleandoc(value.value)


def _is_command(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(
        _is_command_decorator(decorator.func if isinstance(decorator, ast.Call) else decorator)
        for decorator in function.decorator_list
    )


def _is_command_decorator(called: ast.expr) -> bool:
    return isinstance(called, ast.Attribute) and called.attr in COMMAND_DECORATORS
