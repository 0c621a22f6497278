"""Ray Tune drives a sweep: the only module that imports Ray.

One Tune trial per convsweep trial (a grid search over the pending trials), concurrency bounded by the sweep's
``tune.max_concurrent_trials`` and, for local jobs, by this machine's cores; FIFO or ASHA on the reported
metric (``time_attr="epoch"``); ``FailureConfig(max_failures)`` retries a trial whose job failed. With
``tune.proxies: threads`` only the scheduler is Tune's (``SchedulerDecisions``; ``orchestrator.run.pool``).

The trainable is a thin proxy around ``orchestrator.run.proxy.run_trial``: the job trains in its own processes,
the proxy follows the trial directory and imports no MLflow (its records go to the sweep's one writer, a Ray
actor: ``orchestrator.run.writerhost``). Each epoch it reports comes with a tiny ``tune.Checkpoint`` holding the
epoch, so a retried or restored trial reports only epochs Tune has not seen.

How a function trainable stops in Ray 2.60 (``ray/train/_internal/session.py``, ``tune_controller.py``): a STOP
calls the callbacks' ``on_trial_complete`` and ends the actor without waiting for the trial's thread, so the
driver ends the job of a trial ASHA stopped itself from ``on_trial_complete`` (``orchestrator.run.session``);
the proxy's ``finally`` and ``atexit`` handler are a second line. A stop lands once Tune processed its epoch.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from orchestrator.spec.schema import SweepSpec, TrialSpec
from orchestrator.run.pool import TrialOutcome as TuneOutcome, max_concurrent, reported_metrics
from orchestrator.run.proxy import TrialContext, run_trial
from orchestrator.run.rayquiet import RAY_ENV, SignalWarningFilter, quiet_ray_advice
from orchestrator.run.sweepdir import SweepDir
from orchestrator.run.progress import ProgressSink  # rich: loaded by ray.tune anyway
from orchestrator.run.writerhost import WriterHost

__all__ = ["SchedulerDecisions", "TuneOutcome", "experiment_path", "can_restore", "init_ray", "run_tune",
           "start_ray_early"]

logger = logging.getLogger(__name__)

_PROGRESS_FILE = "progress.json"


def experiment_path(sweep: SweepSpec) -> Path:
    return SweepDir.of(sweep).tune


def can_restore(sweep: SweepSpec) -> bool:
    path = experiment_path(sweep)  # (trials followed by the driver's threads leave no Tune experiment)
    return sweep.tune.proxies == "actors" and path.is_dir() and tune.Tuner.can_restore(str(path))


_INIT_LOCK = threading.Lock()
_EARLY: tuple[threading.Event, list[Any]] | None = None  # (set when done, [whether it started Ray, writer])


def start_ray_early(store: tuple[str, str, str] | None = None) -> None:
    """Start Ray in a background thread now, so that its start-up overlaps the driver's own (``init_ray`` waits
    for it); the writer actor then opens ``store`` (URI, experiment, sweep). The thread stays alive (idle) after
    ``ray.init``: Ray's processes are started with PR_SET_PDEATHSIG, which fires when the *thread* that started
    them ends, so a thread that returned would take Ray down with it."""
    global _EARLY
    with _INIT_LOCK:
        if _EARLY is not None or ray.is_initialized():
            return
        done, started = _EARLY = threading.Event(), []

    def start() -> None:
        try:
            started.append(_start_ray())
            started.append(_start_writer(store))  # held here: Ray ends an actor no handle refers to any more
        except Exception:  # noqa: BLE001 - run_tune starts what is missing; this thread must live on (below)
            logger.exception("starting Ray early failed")
        finally:
            done.set()
        threading.Event().wait()  # see the docstring: this thread must outlive Ray's processes

    threading.Thread(target=start, name="ray-start", daemon=True).start()


def init_ray() -> bool:
    """Start a local Ray instance sized to this machine unless one runs (or wait for the one
    ``start_ray_early`` is starting); True if it was started for this driver, which then shuts it down."""
    global _EARLY
    with _INIT_LOCK:
        early, _EARLY = _EARLY, None
    if early is not None:
        done, started = early
        done.wait()
        if started:
            return started[0]
        # the early start failed (its error is in the log): start here, in the driver's own thread
    return _start_ray()


def _start_ray() -> bool:
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    if ray.is_initialized():
        return False
    logging.getLogger("ray._private.worker").addFilter(SignalWarningFilter())
    # Only what the driver needs: no dashboard, no log forwarding (trials log into their directories),
    # this machine's cores (the trials' proxies ask for 0.001 CPU each; the jobs run elsewhere).
    ray.init(
        address="local",
        num_cpus=os.cpu_count() or 1,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
        configure_logging=True,
        # no idle workers started ahead for the driver (one per CPU, ~2 s of CPU each on 2 cores): a trial's
        # proxy gets its worker when Tune starts it, and Ray's start-up competes less with the driver's own
        _system_config={"prestart_worker_first_driver": False},
    )
    return True


# -- the trainable -------------------------------------------------------------------------------------------
_WRITER = "convsweep-tracking-writer"  # the actor's name in the driver's namespace, where the trials run too


class _WriterClient:
    """The proxy's side of the writer actor (``proxy.TrialWriter``): each call waits until the writer has it,
    so one trial's calls keep their order (a threaded actor runs calls concurrently)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def __getattr__(self, method: str) -> Callable[..., Any]:
        return lambda *args, **kwargs: ray.get(self._handle.call.remote(method, *args, **kwargs))


def _start_writer(store: tuple[str, str, str] | None = None) -> Any:
    """The sweep's writer actor (the one ``start_ray_early`` started, if it did). num_cpus=0: it waits on
    MLflow; each proxy waiting in open_trial or finish holds one of its threads (idle threads cost no CPU)."""
    handle = ray.remote(WriterHost).options(name=_WRITER, get_if_exists=True, num_cpus=0, max_concurrency=256).remote()
    if store is not None:  # not waited for: the first trial's open_trial queues behind it
        handle.call.remote("open_store", *store)
    return handle


def _stop_writer(handle: Any) -> None:
    try:  # the trials that still owe records (the store is away) are counted by the driver, resume delivers them
        ray.get(handle.call.remote("drain"))
    finally:
        ray.kill(handle)


def _proxy(config: dict[str, Any], ctx: dict[str, Any]) -> None:
    spec = TrialSpec.model_validate(config["trial"]["spec"])
    context = TrialContext.from_dict(ctx)
    reported = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            reported = int(json.loads((Path(d) / _PROGRESS_FILE).read_text())["epoch"])

    def report(record: dict[str, Any]) -> None:
        metrics = reported_metrics(record)
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / _PROGRESS_FILE).write_text(json.dumps({"epoch": metrics["epoch"], "key": spec.trial_key}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    run_trial(spec, context, report, reported, writer=_WriterClient(ray.get_actor(_WRITER)))


def _trainable(ctx: TrialContext) -> Any:
    # The context is bound here, not put into the trial configs: a restored experiment then runs with the
    # resuming driver's context (environment, git commit) instead of the killed one's.
    # The proxy only waits on files: it takes (almost) no CPU from the jobs it follows (Ray refuses 0).
    return tune.with_resources(tune.with_parameters(_proxy, ctx=ctx.to_dict()), {"cpu": 0.001})


def _trial_name(trial: Any) -> str:
    return str(trial.config["trial"]["key"])


# -- progress (the callback is pickled into Tune's experiment state: it keeps no state of its own) ----------
_SINK: ProgressSink | None = None
# Called in the driver when Tune ends a trial without an error (finished, or stopped by the scheduler). Ray
# runs a stopped function trainable's ``stop`` and then exits its actor without waiting for the trial's
# thread, so the proxy's own cleanup may never run: the driver ends the job of a stopped trial itself.
_ON_COMPLETE: Callable[[str], None] | None = None


class _ProgressCallback(tune.Callback):
    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
        if _SINK is not None and "epoch" in result:
            _SINK.epoch(_trial_name(trial), int(result["epoch"]), result)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if _ON_COMPLETE is not None:
            _ON_COMPLETE(_trial_name(trial))
        if _SINK is not None:
            _SINK.trial_end(_trial_name(trial), True)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if _SINK is not None:
            _SINK.trial_end(_trial_name(trial), False)


def _scheduler(sweep: SweepSpec, specs: list[TrialSpec]) -> Any:
    if sweep.tune.scheduler != "asha":
        return FIFOScheduler()
    return AsyncHyperBandScheduler(
        time_attr="epoch",
        max_t=max(s.recipe.epochs for s in specs),
        grace_period=min(sweep.tune.grace_period, max(s.recipe.epochs for s in specs)),
        reduction_factor=sweep.tune.reduction_factor,
        # at max_t the trial's job is still writing its summary: ending it there would lose the summary
        stop_last_trials=False,
    )


class SchedulerDecisions:
    """The scheduler ``_tuner`` gives Tune, asked directly by the driver's own loop (``orchestrator.run.pool``,
    ``tune.proxies: threads``): Tune's algorithm without Tune's runtime. Tune's schedulers read only a trial's
    ``trial_id`` (``ray/tune/schedulers/async_hyperband.py``), the trial key here; the caller serialises calls."""

    def __init__(self, sweep: SweepSpec, specs: list[TrialSpec]) -> None:
        self._scheduler = _scheduler(sweep, specs)
        self._scheduler.set_search_properties(sweep.tune.metric, sweep.tune.mode)
        self._trials: dict[str, SimpleNamespace] = {}

    def add(self, key: str) -> None:  # a retried trial keeps its place in ASHA's rungs, as under Tune
        if key not in self._trials:
            self._trials[key] = SimpleNamespace(trial_id=key)
            self._scheduler.on_trial_add(None, self._trials[key])

    def result(self, key: str, metrics: dict[str, Any]) -> bool:
        return self._scheduler.on_trial_result(None, self._trials[key], metrics) != TrialScheduler.STOP

    def complete(self, key: str, metrics: dict[str, Any]) -> None:
        self._scheduler.on_trial_complete(None, self._trials.pop(key), metrics)


def _tuner(sweep: SweepSpec, specs: list[TrialSpec], ctx: TrialContext) -> tune.Tuner:
    trials = [{"key": s.trial_key, "spec": s.model_dump(mode="json")} for s in specs]
    return tune.Tuner(
        _trainable(ctx),
        param_space={"trial": tune.grid_search(trials)},
        tune_config=tune.TuneConfig(
            metric=sweep.tune.metric,
            mode=sweep.tune.mode,
            scheduler=_scheduler(sweep, specs),
            max_concurrent_trials=max_concurrent(sweep, specs),
            # A re-used actor saves a worker start per trial (~2 s), but Ray parks the actor of a trial the
            # scheduler stopped without stopping its thread, so the job would run on: no re-use with ASHA.
            reuse_actors=sweep.tune.scheduler != "asha",
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=experiment_path(sweep).name,
            storage_path=str(experiment_path(sweep).parent),
            failure_config=tune.FailureConfig(max_failures=sweep.tune.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=4),
            callbacks=[_ProgressCallback()],
            verbose=0,
        ),
    )


def run_tune(sweep: SweepSpec, specs: list[TrialSpec], ctx: TrialContext, *, restore: bool = False,
             restart_errored: bool = False, progress: ProgressSink | None = None,
             on_complete: Callable[[str], None] | None = None) -> list[TuneOutcome]:
    """Run ``specs`` (or restore the sweep's last Tune experiment) to their end; one outcome per Tune trial.

    ``on_complete(trial_key)`` is called in this process whenever Tune ends a trial without an error.
    """
    global _SINK, _ON_COMPLETE
    quiet_ray_advice()
    started = init_ray()
    _SINK, _ON_COMPLETE = progress, on_complete
    writer = _start_writer()
    try:
        if restore:
            tuner = tune.Tuner.restore(str(experiment_path(sweep)), trainable=_trainable(ctx), resume_unfinished=True,
                                       resume_errored=restart_errored)
        else:
            tuner = _tuner(sweep, specs, ctx)
        grid = tuner.fit()
    finally:
        _SINK, _ON_COMPLETE = None, None
        _stop_writer(writer)
        if started:
            ray.shutdown()
    outcomes = []
    for result in grid:
        key = str(result.config["trial"]["key"]) if result.config else "?"
        metrics = result.metrics or {}
        error = None if result.error is None else str(result.error).strip().splitlines()[-1]
        outcomes.append(TuneOutcome(key, result.error is None, int(metrics.get("epoch") or 0), error))
    return outcomes
