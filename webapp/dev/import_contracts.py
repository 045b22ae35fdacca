"""An import rule that import-linter's own contracts cannot state: names, not modules.

``from flask import request`` is an import of the module ``flask``, which the
services may use (``current_app`` reads the settings); what they must not do
is read the request, or they would work only inside a view. This contract
reads each module's import statements and refuses the names it lists::

    [importlinter:contract:services-without-request]
    name = Services never read the HTTP request
    type = forbidden_names
    source_modules = webapp.services
    forbidden_names = flask.request

``import flask`` is refused too: through it any name can be reached unseen.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import grimp
from importlinter import Contract, ContractCheck, fields, output


class ForbiddenNamesContract(Contract):
    """Modules of ``source_modules`` (and below) never import ``forbidden_names``."""

    type_name = "forbidden_names"

    source_modules = fields.ListField(subfield=fields.StringField())
    #: ``package.name`` pairs, e.g. ``flask.request``
    forbidden_names = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        forbidden: dict[str, set[str]] = {}
        for dotted in self.forbidden_names:  # type: ignore[attr-defined]
            package, _, name = str(dotted).rpartition(".")
            forbidden.setdefault(package, set()).add(name)
        modules: set[str] = set()
        for source in self.source_modules:  # type: ignore[attr-defined]
            modules |= {str(source), *graph.find_descendants(str(source))}
        found: list[str] = []
        for module in sorted(modules):
            for line, text in _forbidden_imports(module, forbidden):
                found.append(f"{module}:{line}: {text}")
        return ContractCheck(kept=not found, metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for line in check.metadata["found"]:
            output.print_error(line, bold=False)
            output.new_line()


def _forbidden_imports(module: str, forbidden: dict[str, set[str]]) -> list[tuple[int, str]]:
    """Each import statement of ``module`` that brings in a forbidden name, with its line."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return []
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"), filename=spec.origin)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in forbidden:
            names = {alias.name for alias in node.names}
            if names & forbidden[node.module] or "*" in names:
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in forbidden:
                    found.append((node.lineno, ast.unparse(node)))
    return found
