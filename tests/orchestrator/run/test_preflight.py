"""What only the machine can answer, checked before a sweep starts (orchestrator.run.preflight): the executor
kind is installed and the tracking store opens. The sweep file's own checks (orchestrator.spec) stay torch-,
MLflow- and executor-free, and report on the same line."""

from __future__ import annotations

import pytest
import yaml

from orchestrator.run import preflight
from orchestrator.spec.errors import ConfigError
from orchestrator.spec.load import load_sweep


def _file(tmp_path, **fields):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "pf", "base": {"dataset": {"name": "digits"}}, **fields}))
    return path


def test_a_store_that_is_not_a_database_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "notes.db").write_text("not a database, a text file\n" * 100)
    path = _file(tmp_path, tracking={"uri": f"sqlite:///{tmp_path}/notes.db"}, executor={"kind": "kubernetes"})
    load_sweep(path)  # the file's checks: the URI is well formed and its folder exists
    with pytest.raises(ConfigError) as info:
        preflight.load_sweep(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert "executor.kind: unknown executor (got 'kubernetes'; allowed: " in text  # both on one line
    assert "tracking.uri: the store cannot be opened: " in text
    preflight.load_sweep(path, check=False)  # `convsweep table` and profiles: not the machine's business


def test_machine_checks_pass_for_a_store_in_an_existing_folder(tmp_path):
    path = _file(tmp_path, tracking={"uri": f"sqlite:///{tmp_path}/mlruns.db"})
    assert preflight.load_sweep(path).name == "pf"
    assert not (tmp_path / "mlruns.db").exists()  # checking creates no store
