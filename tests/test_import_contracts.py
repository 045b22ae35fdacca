"""The import rule import-linter cannot state by itself: services never import ``flask.request``."""

from __future__ import annotations

import sys

import grimp
import pytest

from webapp.dev.import_contracts import ForbiddenNamesContract


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A throwaway package ``layered`` with a ``services`` subpackage, on the path."""
    root = tmp_path / "layered"
    (root / "services").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "services" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for name in [name for name in sys.modules if name.split(".")[0] == "layered"]:
        del sys.modules[name]


def _check(package_root):
    graph = grimp.build_graph("layered", include_external_packages=True, cache_dir=None)
    contract = ForbiddenNamesContract(
        name="services without request",
        session_options={},
        contract_options={
            "source_modules": ["layered.services"],
            "forbidden_names": ["flask.request"],
        },
    )
    return contract.check(graph, verbose=False)


def test_current_app_is_allowed(package):
    (package / "services" / "settings.py").write_text("from flask import current_app\n")
    assert _check(package).kept


@pytest.mark.parametrize(
    "source",
    [
        "from flask import request\n",
        "from flask import current_app, request as incoming\n",
        "from flask import (\n    current_app,\n    request,\n)\n",
        "import flask\n",
        "def view():\n    from flask import request\n    return request\n",
    ],
)
def test_the_request_is_refused_however_it_is_imported(package, source):
    (package / "services" / "reader.py").write_text(source)
    check = _check(package)
    assert not check.kept
    [found] = check.metadata["found"]
    assert found.startswith("layered.services.reader:")
