"""The docs name what the code does: result fields, the error tree, engine error codes, CLI help."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys

from sluice import errors
from sluice.contract import Job, Result
from tests.conftest import ROOT

# Every module that defines a SluiceError subclass is imported, so __subclasses__ sees them all.
MODULES = [
    "sluice.urlpolicy",
    "sluice.contract",
    "producer.collect",
    "producer.client",
    "results_sink.signing",
    "consumer.vllm_engine",
]


def _docs() -> str:
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(p.read_text() for p in texts if p.exists())


def test_every_job_and_result_field_is_documented() -> None:
    docs = _docs()
    for model in (Job, Result):
        missing = [name for name in model.model_fields if f"`{name}`" not in docs]
        assert not missing, f"{model.__name__} fields not in the docs: {missing}"


def _subclasses(cls: type) -> set[type]:
    found: set[type] = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_the_error_tree_draws_every_sluice_error() -> None:
    for name in MODULES:
        importlib.import_module(name)
    tree = errors.__doc__ or ""
    missing = [c.__name__ for c in _subclasses(errors.SluiceError) if c.__name__ not in tree]
    assert not missing, f"not in sluice/errors.py's tree: {missing}"


def test_the_vllm_engine_lists_exactly_the_error_codes_it_raises() -> None:
    source = (ROOT / "consumer/vllm_engine.py").read_text()
    module = ast.parse(source)
    raised = {
        node.args[0].value
        for node in ast.walk(module)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "JobError"
        and isinstance(node.args[0], ast.Constant)
    }
    doc = ast.get_docstring(module) or ""
    listed = set(re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", doc.split("precise code")[1].split(".\n")[0]))
    assert raised and listed == raised


def test_api_help_names_what_it_serves() -> None:
    for args in (["--help"], ["api", "--help"]):
        out = subprocess.run(
            [sys.executable, "-m", "sluice.cli", *args], capture_output=True, text=True, check=True
        ).stdout
        assert "POST /v1/jobs" in out and "GET /v1/jobs/{id}" in out, out
