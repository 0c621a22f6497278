"""Trials reused across sweeps: a trial finished in one sweep of a tracking store is not trained again in another.

A trial's key hashes what the trial computes, not the sweep it belongs to, so sweeps that share cells share
keys: half of GMConv Table 3's trials are Table 2's, half of Fig. 6's are Table 1's. Before a sweep runs, each
of its trials that has no run and no directory of its own yet is looked up by key in every experiment of the
store; a FINISHED training run whose trial directory is DONE on disk (its checkpoints are what evaluation
sweeps and ``convsweep logs`` read) and holds the analyses this trial asks for (``analysis``: ERF, learned
shapes) is its source. The trial is then recorded in this sweep as

- a trial directory that is a symbolic link to the source's, so ``status``, ``logs`` and evaluation sweeps
  read it like any other (nothing is copied; nothing writes into it, the trial being settled);
- an MLflow run in this sweep's experiment, tagged ``convsweep.reused_from_run`` / ``reused_from_sweep``,
  holding this sweep's params and a copy of every metric's history, ended FINISHED, so tables read it like
  any other run.

``--no-reuse`` forces fresh runs: the links of the sweep's reused trials are deleted (the MLflow run marked
deleted, the directory link removed; the source is untouched) and the trials are trained again.
Finding sources only reads: ``plan`` uses it without creating a tracking store that does not exist.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.spec.schema import SweepSpec, TrialSpec
from orchestrator.track.store import TAG, absolute_tracking_uri, sqlite_path
from orchestrator.dirs.trialdir import TrialDir

if TYPE_CHECKING:  # MLflow is imported only once a store is known to exist: `plan` without one stays light
    from orchestrator.track.tracker import Tracker

__all__ = ["SourceRun", "find_sources", "link_path", "link_reused", "reuse_finished", "unlink_reused", "REUSED_FROM_RUN", "REUSED_FROM_SWEEP"]

logger = logging.getLogger(__name__)

REUSED_FROM_RUN = f"{TAG}reused_from_run"
REUSED_FROM_SWEEP = f"{TAG}reused_from_sweep"
_METRIC_BATCH = 1000  # MLflow's limit of metrics per log_batch
_KEYED_QUERIES = 20  # more candidates than this: one query for every finished run of the other sweeps


@dataclass(frozen=True)
class SourceRun:
    """The finished run a trial is reused from."""

    run_id: str
    sweep: str
    experiment_id: str
    trial_dir: Path


def _store_exists(uri: str) -> bool:
    """False for a SQLite file that is not there yet: looking into it would create it."""
    path = sqlite_path(uri)
    return path is None or path.exists()


def find_sources(spec: SweepSpec, trials: list[TrialSpec], client: Any | None = None) -> dict[str, SourceRun]:
    """For each trial that can be reused, the finished run of another sweep it is reused from.

    Only reads: a trial qualifies when this sweep has no run and no directory for it (reusing never replaces
    anything), and never for an evaluation sweep (an evaluation trial's key names its source trial's directory).
    """
    if spec.evaluate is not None or not trials or not _store_exists(spec.tracking.uri):
        return {}
    if client is None:
        runs = _store_runs(spec.tracking.uri)
        if runs is not None:  # a SQLite store, read directly: no MLflow import, one pass over the runs
            return _sources(spec, _candidates(spec, trials, runs), runs)
        from mlflow.tracking import MlflowClient

        # absolute: MLflow keeps one store per URI string, so a relative SQLite path would stay bound to
        # the folder this process first opened it in
        client = MlflowClient(tracking_uri=absolute_tracking_uri(spec.tracking.uri))
    experiments = [e.experiment_id for e in _all_experiments(client)]
    if not experiments:
        return {}
    own = _tagged(_search(client, experiments, f"tags.`{TAG}sweep` = '{spec.name}'"))
    candidates = _candidates(spec, trials, own)
    others = f"attributes.status = 'FINISHED' and tags.`{TAG}sweep` != '{spec.name}'"
    if len(candidates) <= _KEYED_QUERIES:
        finished = [run for t in candidates
                    for run in _search(client, experiments, f"tags.`{TAG}trial_key` = '{t.trial_key}' and {others}")]
    else:  # one query per key took 5 ms each: 50 s for the candidates of a 10,000-trial plan
        finished = _search(client, experiments, f"tags.`{TAG}trial_key` IS NOT NULL and {others}")
    return _sources(spec, candidates, own + _tagged(finished))


# (run id, experiment id, status, tags): a run as the choice of sources reads it, from MLflow or from the file
_Run = tuple[str, str, str, dict[str, str]]
_SOURCE_TAGS = tuple(f"{TAG}{name}" for name in ("trial_key", "sweep", "kind", "trial_dir")) + (REUSED_FROM_RUN,)


def _store_runs(uri: str) -> list[_Run] | None:
    path = sqlite_path(uri)
    if path is None:
        return None
    from orchestrator.track.sqlitecolumns import read_tagged_runs

    return read_tagged_runs(path, _SOURCE_TAGS)


def _tagged(runs: list[Any]) -> list[_Run]:
    return [(r.info.run_id, r.info.experiment_id, r.info.status, r.data.tags) for r in runs]


def _candidates(spec: SweepSpec, trials: list[TrialSpec], runs: list[_Run]) -> list[TrialSpec]:
    """The trials this sweep has no run and no directory for: reusing never replaces anything."""
    own = {tags.get(f"{TAG}trial_key") for _, _, _, tags in runs if tags.get(f"{TAG}sweep") == spec.name}
    return [t for t in trials if t.trial_key not in own and not os.path.lexists(link_path(spec, t.trial_key))]


def _sources(spec: SweepSpec, candidates: list[TrialSpec], runs: list[_Run]) -> dict[str, SourceRun]:
    """Each candidate's source among ``runs`` (oldest first): the first FINISHED training run of another sweep
    whose trial directory is DONE and holds the analyses the trial asks for."""
    by_key: dict[str, list[_Run]] = {}
    for run in runs:
        tags = run[3]
        if run[2] == "FINISHED" and tags.get(f"{TAG}sweep") != spec.name and f"{TAG}trial_key" in tags:
            by_key.setdefault(tags[f"{TAG}trial_key"], []).append(run)
    found: dict[str, SourceRun] = {}
    for trial in candidates:
        for run_id, experiment_id, _, tags in by_key.get(trial.trial_key, ()):
            if tags.get(f"{TAG}kind", "train") != "train" or REUSED_FROM_RUN in tags:
                continue  # a link is not a source: its source is found directly
            folder = tags.get(f"{TAG}trial_dir")
            if folder and TrialDir(folder).is_done and _has_analyses(TrialDir(folder), trial):
                found[trial.trial_key] = SourceRun(run_id, tags.get(f"{TAG}sweep", "?"), experiment_id, Path(folder))
                break
    return found


def _has_analyses(source: TrialDir, trial: TrialSpec) -> bool:
    """Whether the source recorded the analyses ``trial`` asks for: they are not part of a trial's key (they
    read the model, they do not train it), so a trial trained without them is no stand-in for one with them."""
    if trial.analysis == type(trial.analysis)():
        return True
    try:
        recorded = source.read_spec().get("analysis") or {}
    except (OSError, ValueError):
        return False
    return recorded == trial.analysis.model_dump(mode="json")


def _every_page(search: Callable[[str | None], Any]) -> list[Any]:
    """All results of a paged MLflow search (``search(page_token)`` returns a page with ``.token``)."""
    out: list[Any] = []
    token = None
    while True:
        page = search(token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def _all_experiments(client: Any) -> list[Any]:
    return _every_page(lambda token: client.search_experiments(max_results=1000, page_token=token))


def _search(client: Any, experiment_ids: list[str], query: str) -> list[Any]:
    """Active runs matching ``query``, oldest first (the run that trained a trial, should several hold it)."""
    return _every_page(lambda token: client.search_runs(
        experiment_ids, query, max_results=1000, order_by=["attributes.start_time ASC"], page_token=token))


def link_path(spec: SweepSpec, trial_key: str) -> Path:
    """Where the trial's directory of this sweep is, unresolved (``TrialDir`` follows the link to the source)."""
    return Path(spec.storage.root).absolute() / spec.name / trial_key


def link_reused(spec: SweepSpec, trial: TrialSpec, source: SourceRun, tracker: Tracker) -> str:
    """Record ``trial`` in this sweep as reused from ``source``; returns the new run's id."""
    link = link_path(spec, trial.trial_key)
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(source.trial_dir.resolve(), link, target_is_directory=True)
    client = tracker.client
    original = client.get_run(source.run_id)
    tags = {
        f"{TAG}sweep": spec.name,
        f"{TAG}trial_key": trial.trial_key,
        f"{TAG}trial_dir": str(link),
        f"{TAG}git_commit": original.data.tags.get(f"{TAG}git_commit", "unknown"),
        f"{TAG}executor": original.data.tags.get(f"{TAG}executor", "unknown"),
        f"{TAG}kind": "train",
        f"{TAG}requeues": "0",
        REUSED_FROM_RUN: source.run_id,
        REUSED_FROM_SWEEP: source.sweep,
        f"{TAG}reused_from_experiment": source.experiment_id,
    }
    run = client.create_run(tracker.experiment_id, tags=tags,
                            run_name=f"{trial.model}-{trial.layer.method}-{trial.trial_key}-reused")
    run_id = run.info.run_id
    from mlflow.entities import Param

    params = [Param(k, v) for k, v in sorted(trial.flat_params().items())]
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i : i + 100])
    history = [m for key in sorted(original.data.metrics) for m in client.get_metric_history(source.run_id, key)]
    for i in range(0, len(history), _METRIC_BATCH):
        client.log_batch(run_id, metrics=history[i : i + _METRIC_BATCH])
    client.set_terminated(run_id, "FINISHED")
    logger.info("trial %s reused from sweep %s (run %s)", trial.trial_key, source.sweep, source.run_id)
    return run_id


def unlink_reused(spec: SweepSpec, tracker: Tracker) -> list[str]:
    """Delete this sweep's links to reused trials (``--no-reuse``); returns their trial keys."""
    dropped = []
    for key, run in tracker.status_by_key().items():
        if REUSED_FROM_RUN not in run.data.tags:
            continue
        tracker.client.delete_run(run.info.run_id)
        link = link_path(spec, key)
        if link.is_symlink():
            link.unlink()
        dropped.append(key)
    return dropped


def reuse_finished(spec: SweepSpec, trials: list[TrialSpec], tracker: Tracker) -> dict[str, str]:
    """Link every trial of ``trials`` that finished in another sweep; returns trial key -> source sweep."""
    sources = find_sources(spec, trials, tracker.client)
    by_key = {t.trial_key: t for t in trials}
    for key, source in sources.items():
        link_reused(spec, by_key[key], source, tracker)
    return {key: source.sweep for key, source in sources.items()}
