"""Loading sweep files: YAML, environment expansion, profiles, --set overrides, one-line errors.

Most tests load with ``check=False`` (schema + expansion only) so they do not depend on ``layers`` and
``pipelines``; the checks against those live in test_expand.py and the malformed catalogue.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from orchestrator.spec.schema import SweepSpec
from orchestrator.spec.expand import expand
from orchestrator.run import preflight
from orchestrator.spec.errors import ConfigError, Problem
from orchestrator.spec.load import apply_override, load_sweep

BASE = """\
name: demo
base:
  model: resnet20
  dataset: {name: digits}
  layer: {method: stdconv}
  recipe: {epochs: 3, optimizer: {lr: 0.1}}
grid:
  layer.method: [stdconv, gmconv]
seeds: [0, 1]
profiles:
  paper: {}
  smoke: {base.recipe.epochs: 1, grid.layer.method: [stdconv], seeds: [0]}
"""


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load_error(path: Path, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_sweep(path, check=False, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert isinstance(info.value, ValueError)
    return text


def test_loads_typed_spec_with_defaults(tmp_path):
    spec = load_sweep(write(tmp_path, BASE), check=False)
    assert isinstance(spec, SweepSpec)
    assert spec.base.recipe.epochs == 3
    assert spec.base.recipe.optimizer.name == "sgd"
    assert spec.grid == {"layer.method": ["stdconv", "gmconv"]}
    assert spec.experiment == "demo"
    assert len(expand(spec)) == 4


def test_relative_roots_resolve_against_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, BASE + "storage: {root: out/runs}\n")
    spec = load_sweep(path, overrides=["base.dataset.root=data/x",
                                       "zip=[{dataset.name: [mnist, cifar10], dataset.root: [a, /abs/b]}]"],
                      check=False)
    assert spec.storage.root == str(tmp_path / "out" / "runs")
    assert spec.base.dataset.root == str(tmp_path / "data" / "x")
    assert spec.zip[0]["dataset.root"] == [str(tmp_path / "a"), "/abs/b"]


def test_env_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("CS_TEST_ROOT", "/data/cifar")
    monkeypatch.setenv("CS_TEST_EPOCHS", "7")
    monkeypatch.delenv("CS_TEST_UNSET", raising=False)
    path = write(tmp_path, BASE.replace("{name: digits}", "{name: digits, root: '${CS_TEST_ROOT}/x'}")
                 .replace("epochs: 3", "epochs: '${CS_TEST_EPOCHS}'")
                 + "description: '${CS_TEST_UNSET:-fallback} $${LITERAL}'\n")
    spec = load_sweep(path, check=False)
    assert spec.base.dataset.root == "/data/cifar/x"
    assert spec.base.recipe.epochs == 7
    assert spec.description == "fallback ${LITERAL}"


def test_unset_env_var_names_variable_and_key(tmp_path, monkeypatch):
    monkeypatch.delenv("CS_TEST_UNSET", raising=False)
    path = write(tmp_path, BASE.replace("{name: digits}", "{name: digits, root: '${CS_TEST_UNSET}'}"))
    text = load_error(path)
    assert "base.dataset.root: environment variable CS_TEST_UNSET is not set" in text


def test_profile_applies_before_validation(tmp_path):
    path = write(tmp_path, BASE)
    spec = load_sweep(path, profile="smoke", check=False)
    assert spec.base.recipe.epochs == 1
    assert spec.seeds == [0]
    assert len(expand(spec)) == 1
    assert load_sweep(path, profile="paper", check=False) == load_sweep(path, check=False)


def test_profile_dotted_grid_key_and_null_removes_entry(tmp_path):
    path = write(tmp_path, BASE + "  more: {grid.dataset.name: [digits, mnist], grid.layer.method: null}\n")
    spec = load_sweep(path, profile="more", check=False)
    assert spec.grid == {"dataset.name": ["digits", "mnist"]}


def test_unknown_profile_lists_profiles(tmp_path):
    text = load_error(write(tmp_path, BASE), profile="huge")
    assert "profiles: unknown profile 'huge'" in text
    assert "allowed: paper, smoke" in text


def test_typo_in_unused_profile_is_caught(tmp_path):
    text = load_error(write(tmp_path, BASE + "  broken: {base.recipe.epoch: 1}\n"))
    assert "profiles.broken.base.recipe.epoch: not a key of the sweep file" in text


def test_set_overrides_parse_yaml_and_win_over_profile(tmp_path):
    path = write(tmp_path, BASE)
    spec = load_sweep(path, profile="smoke", overrides=["base.recipe.epochs=5", "seeds=[3, 4]",
                                                        "base.recipe.optimizer.name=adam"], check=False)
    assert spec.base.recipe.epochs == 5
    assert spec.seeds == [3, 4]
    assert spec.base.recipe.optimizer.name == "adam"


def test_set_errors(tmp_path):
    path = write(tmp_path, BASE)
    assert "--set: expected key=value" in load_error(path, overrides=["epochs"])
    text = load_error(path, overrides=["base.recipe.epochs=0"])
    assert "base.recipe.epochs: must be >= 1 [set by --set] (got 0; allowed: >= 1)" in text
    assert "profiles cannot be set" in load_error(path, overrides=["profiles.smoke=1"])


def test_profile_origin_is_named(tmp_path):
    path = write(tmp_path, BASE + "  bad: {base.recipe.optimizer.lr: -1}\n")
    text = load_error(path, profile="bad")
    assert "base.recipe.optimizer.lr: must be > 0" in text
    assert "[set by profile 'bad']" in text


def test_unknown_key_lists_valid_keys_and_suggests(tmp_path):
    text = load_error(write(tmp_path, BASE.replace("epochs: 3", "epoch: 3")))
    assert "base.recipe.epoch: unknown key, did you mean 'epochs'?" in text
    assert "allowed: optimizer, schedule, epochs, batch_size" in text


def test_literal_error_lists_allowed_values(tmp_path):
    text = load_error(write(tmp_path, BASE + "tune: {scheduler: pbt}\n"))
    assert "tune.scheduler: not an allowed value (got 'pbt'; allowed: fifo, asha)" in text


def test_union_field_describes_every_form(tmp_path):
    text = load_error(write(tmp_path, BASE.replace("{method: stdconv}", "{method: aconv, aconv_sigma_init: x}")))
    assert "base.layer.aconv_sigma_init: not an accepted form" in text
    assert "a number or a list of 2" in text


def test_several_errors_on_one_line(tmp_path):
    text = load_error(write(tmp_path, BASE.replace("epochs: 3", "epochs: 0, batch_size: -1")))
    assert "base.recipe.epochs: must be >= 1" in text and "; base.recipe.batch_size: must be >= 1" in text


def test_yaml_syntax_error_names_line(tmp_path):
    text = load_error(write(tmp_path, "name: x\nbase: {model: [resnet20\nseeds: [0]\n"))
    assert "line 3" in text and "invalid YAML" in text


def test_top_level_must_be_mapping(tmp_path):
    assert "(top level): the file must be a mapping" in load_error(write(tmp_path, "- a\n- b\n"))
    assert "(top level): the file must be a mapping" in load_error(write(tmp_path, ""))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the sweep file"):
        load_sweep(tmp_path / "nope.yaml")


def test_yaml_tags_are_refused(tmp_path):
    # safe_load only: a python tag is a YAML error, never an object
    text = load_error(write(tmp_path, "name: !!python/object/apply:os.system ['true']\n"))
    assert "invalid YAML" in text


def test_apply_override_paths():
    data: dict = {"grid": {"model": ["a"]}, "base": {"recipe": {"epochs": 1}}}
    apply_override(data, "grid.layer.method", ["gmconv"])
    apply_override(data, "base.recipe.optimizer.lr", 0.5)
    apply_override(data, "evaluate.where.layer.method", "coc")
    assert data["grid"] == {"model": ["a"], "layer.method": ["gmconv"]}
    assert data["base"]["recipe"] == {"epochs": 1, "optimizer": {"lr": 0.5}}
    assert data["evaluate"] == {"where": {"layer.method": "coc"}}
    with pytest.raises(ConfigError, match="inside a non-mapping"):
        apply_override(data, "base.recipe.epochs.x", 1)


def test_environment_untouched(tmp_path):
    before = dict(os.environ)
    load_sweep(write(tmp_path, BASE), check=False)
    assert dict(os.environ) == before


# -- the malformed catalogue: every file gives a one-line error naming the file, the key and the problem ----
MALFORMED = sorted((Path(__file__).parent / "malformed").glob("*.yaml"))


def _directives(path: Path) -> dict[str, list[str]]:
    """Leading `# name: value` comment lines: expect (fragment), key, and optionally profile / set."""
    out: dict[str, list[str]] = {}
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():  # some hold bad bytes on purpose
        if not line.startswith("# "):
            break
        name, _, value = line[2:].partition(": ")
        out.setdefault(name, []).append(value)
    return out


def test_catalogue_is_large_enough():
    assert len(MALFORMED) >= 80


@pytest.mark.parametrize("path", MALFORMED, ids=[p.stem for p in MALFORMED])
def test_malformed_sweep_file(path, monkeypatch):
    monkeypatch.delenv("CONVSWEEP_CATALOGUE_UNSET", raising=False)
    directives = _directives(path)
    assert set(directives) <= {"expect", "key", "profile", "set"} and "expect" in directives and "key" in directives
    with pytest.raises(ConfigError) as info:  # with the machine's checks too (executor kind): the whole catalogue
        preflight.load_sweep(path, profile=(directives.get("profile") or [None])[0],
                             overrides=directives.get("set", ()))
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    key = directives["key"][0]
    # the key opens one of the problems on the line (several are joined by "; ")
    assert text.startswith(f"{path}: {key}") or f"; {key}" in text, text
    assert directives["expect"][0] in text, text


def test_table_reference_resolves_beside_the_sweep_file(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    folder = tmp_path / "experiments"
    folder.mkdir()
    path = write(folder, BASE + "table: {rows: [layer.method], reference: {file: reference/t.csv, match: {}}}\n")
    spec = load_sweep(path, check=False)
    assert spec.table.reference.file == str(folder / "reference" / "t.csv")


def test_config_error_pickles_intact(tmp_path):
    import pickle

    path = write(tmp_path, BASE + "tune: {scheduler: pbt}\n")
    with pytest.raises(ConfigError) as info:
        load_sweep(path, check=False)
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value) and again.key == "tune.scheduler" and again.file == str(path)
    missing = pickle.loads(pickle.dumps(ConfigError(Problem("evaluate.source_sweep", "required key is missing"))))
    assert str(missing) == "evaluate.source_sweep: required key is missing"


def test_default_storage_root_is_pinned_and_semantic_errors_name_their_origin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, BASE)
    assert load_sweep(path, check=False).storage.root == str(tmp_path / "runs")
    text = load_error(path, overrides=["grid.layer.method=[stdconv, stdconv]"])
    assert "grid.layer.method: repeated value (would duplicate trials) [set by --set]" in text


def test_trials_false_stops_at_the_schema(tmp_path: Path) -> None:
    """``trials=False`` (what `convsweep table` reads with): the spec, without expanding or checking trials."""
    path = write(tmp_path, BASE.replace("seeds: [0, 1]", "seeds: [0, 0]"))  # a repeated seed: a trial error
    with pytest.raises(ConfigError, match="seeds: repeated seed"):
        load_sweep(path, check=False)
    spec = load_sweep(path, profile="smoke", overrides=["base.recipe.epochs=2"], trials=False)
    assert (spec.seeds, spec.grid["layer.method"], spec.base.recipe.epochs) == ([0], ["stdconv"], 2)
    with pytest.raises(ConfigError, match="base.recipe.epochs: must be >= 1"):  # the schema still holds
        load_sweep(path, overrides=["base.recipe.epochs=0"], trials=False)


# -- files that are not YAML text: one line naming the file, fast, nothing read that would block ----------
@pytest.mark.parametrize("content, expect", [
    ("name: demo\nbase: {model: resnet20}\n".encode("utf-16"), "is UTF-16 text"),
    (b"name: demo\n\xe0\x80\x80\x00\x9f random bytes", "is not UTF-8 text (byte 0xe0 at offset 11)"),
])
def test_non_utf8_sweep_files_are_one_line_errors(tmp_path, content, expect):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_sweep(path, check=False)
    assert str(info.value).startswith(f"{path}: (file): {expect}"), str(info.value)


def test_a_named_pipe_or_a_folder_is_refused_without_reading(tmp_path):
    pipe = tmp_path / "sweep.yaml"
    os.mkfifo(pipe)  # opening it for reading would block until a writer came
    with pytest.raises(ConfigError, match=r"sweep.yaml: \(file\): is a named pipe, not a sweep file"):
        load_sweep(pipe, check=False)
    with pytest.raises(ConfigError, match=r": \(file\): is a directory, not a sweep file"):
        load_sweep(tmp_path, check=False)


def test_alias_bomb_stops_fast_and_small(tmp_path):
    """Nine levels of nine aliases (10^9 values when expanded): refused in well under 2 s and 200 MB."""
    import resource
    import time

    lines = ["name: demo", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than 1,000,000 values"):
        load_sweep(path, check=False)
    assert time.perf_counter() - start < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB


def test_aliases_within_the_bounds_still_work(tmp_path):
    text = BASE.replace("seeds: [0, 1]", "seeds: &seeds [0, 1]").replace("seeds: [0]}", "seeds: *seeds}")
    assert load_sweep(write(tmp_path, text), profile="smoke", check=False).seeds == [0, 1]
