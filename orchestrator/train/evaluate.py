"""Evaluation trials: re-evaluate a finished trial's weights under test-time transforms (GMConv Table 4).

An evaluation trial trains nothing. It loads a checkpoint of the source trial (``spec.evaluate_source`` is
the source's trial directory; the source must be DONE): its final one, or with ``evaluate_checkpoint: best``
its best epoch's (``best.pt``, the weights behind the source's ``best_val_top1``). It rebuilds the model from
the spec stored in that checkpoint and evaluates it on the validation split once per transform in
``spec.transforms`` with the same distributed evaluation as training (every image counted once over the
ranks). Rank 0 writes ``summary.json`` with ``<transform>_top1`` and ``<transform>_top5`` (percent) and the
data backend its loaders ran on (``data_backend``), then the DONE marker.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import torch

import pipelines
from orchestrator.dirs.trialdir import TrialDir
from orchestrator.spec.schema import TrialSpec
from orchestrator.train.build import build_trial_model
from orchestrator.train.checkpoint import load_checkpoint
from orchestrator.train.distributed import DistInfo
from orchestrator.train.validation import evaluate_model

__all__ = ["evaluate", "load_best_model", "load_final_model"]

log = logging.getLogger(__name__)


def load_final_model(source: TrialDir, device: str) -> tuple[torch.nn.Module, TrialSpec]:
    """The source trial's model with its final weights, in eval mode on ``device``, and the source's spec."""
    if not source.is_done:
        raise ValueError(f"evaluate_source: trial {str(source.path)!r} has not finished (no DONE marker)")
    state = load_checkpoint(source.last_checkpoint, source.prev_checkpoint)
    if state is None:
        raise ValueError(f"evaluate_source: no readable checkpoint in {str(source.checkpoint_dir)!r}")
    source_spec = TrialSpec.model_validate(state["spec"])
    if int(state["epoch"]) != source_spec.recipe.epochs:
        raise ValueError(
            f"evaluate_source: final checkpoint of {str(source.path)!r} is from epoch {state['epoch']}, "
            f"not the last epoch {source_spec.recipe.epochs} (last.pt unreadable?)"
        )
    return _model_of(state, device), source_spec


def load_best_model(source: TrialDir, device: str) -> tuple[torch.nn.Module, TrialSpec]:
    """The source trial's model with its best epoch's weights (by val_top1), in eval mode on ``device``."""
    if not source.is_done:
        raise ValueError(f"evaluate_source: trial {str(source.path)!r} has not finished (no DONE marker)")
    best_epoch = int((source.read_summary() or {}).get("best_epoch") or 0)
    if best_epoch < 1:
        raise ValueError(f"evaluate_source: trial {str(source.path)!r} records no best epoch in its summary.json")
    # the epoch must match: a best.pt left behind or ahead by a crash holds other weights
    state = load_checkpoint(source.best_checkpoint, source.prev_best_checkpoint, epoch=best_epoch)
    if state is None:
        raise ValueError(
            f"evaluate_source: no readable checkpoint of the best epoch {best_epoch} in "
            f"{str(source.checkpoint_dir)!r} (best.pt; trained before convsweep kept it?); "
            f"evaluate.checkpoint: last evaluates the final weights"
        )
    return _model_of(state, device), TrialSpec.model_validate(state["spec"])


def _model_of(state: dict[str, Any], device: str) -> torch.nn.Module:
    model = build_trial_model(TrialSpec.model_validate(state["spec"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def evaluate(spec: TrialSpec, dist: DistInfo, trial_dir: TrialDir) -> dict[str, Any]:
    """Run the evaluation trial ``spec`` on this rank; returns the summary (written by rank 0)."""
    try:
        return _evaluate(spec, dist, trial_dir)
    except Exception:
        if dist.is_main:
            trial_dir.mark_failed(traceback.format_exc())
        log.exception("evaluation trial %s failed on rank %d", spec.trial_key, dist.rank)
        raise


def _evaluate(spec: TrialSpec, dist: DistInfo, trial_dir: TrialDir) -> dict[str, Any]:
    if spec.evaluate_source is None:
        raise ValueError("evaluate_source: an evaluation trial needs the source trial directory (got None)")
    if not spec.transforms:
        raise ValueError(f"transforms: an evaluation trial needs at least one of {pipelines.EVAL_TRANSFORMS}")
    if dist.is_main:
        trial_dir.create()
        trial_dir.failed_marker.unlink(missing_ok=True)
    load = load_best_model if spec.evaluate_checkpoint == "best" else load_final_model
    model, source_spec = load(TrialDir(spec.evaluate_source), dist.device)
    ds = spec.dataset
    summary: dict[str, Any] = {}
    for transform in spec.transforms:
        loader = pipelines.build_loader(
            ds.name,
            ds.root,
            "val",
            batch_size=spec.recipe.batch_size,
            backend=ds.backend,
            rank=dist.rank,
            world_size=dist.world_size,
            device=dist.device,
            seed=spec.seed,
            num_workers=ds.num_workers,
            eval_transform=transform,
        )
        result = evaluate_model(model, loader, dist)
        summary["data_backend"] = loader.backend  # `auto` resolved, as a training trial records it
        summary[f"{transform}_top1"] = result["top1"]
        summary[f"{transform}_top5"] = result["top5"]
        log.info("%s of %s (%s checkpoint): top1 %.2f top5 %.2f", transform, source_spec.trial_key,
                 spec.evaluate_checkpoint, result["top1"], result["top5"])
    if dist.is_main:
        trial_dir.write_summary(summary)
        trial_dir.mark_done()
    return summary
