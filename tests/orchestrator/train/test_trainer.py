"""The trainer for real: CIFAR ResNet-20 on digits, a few tiny steps per epoch, on the CPU.

Covers the end-to-end files of a trial, the plateau schedule fed by the evaluations, what reaches the loaders
and the model, the ACONV sigma clamp, the orth loss term and a 2-process gloo DDP run launched through
submitit's LocalExecutor (the path the ``local`` executor takes). Resuming is test_resume.py's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cloudpickle
import pytest
import submitit
import torch

import layers
from orchestrator.dirs.trialdir import TrialDir
from orchestrator.spec.schema import DatasetSpec, LayerSpec, TrialSpec
from orchestrator.train.build import build_trial_model
from orchestrator.train.distributed import setup_distributed, teardown_distributed
from orchestrator.train.faults import FAULT_ENV, InjectedFault
from orchestrator.train.trainer import Trainer, train

from trial_helpers import CPU, assert_same_weights, last_state, new_trial, tiny_spec

# The DDP test ships functions of this module to submitit's job processes, which cannot import tests/.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


pytestmark = pytest.mark.usefixtures("one_torch_thread")

METRIC_KEYS = {"epoch", "train_loss", "train_top1", "val_top1", "val_top5", "val_loss", "lr", "epoch_seconds",
               "images_per_second", "sigma"}


def test_single_process_end_to_end_writes_the_trial_files(uninterrupted: TrialDir) -> None:
    trial = uninterrupted
    records = [json.loads(line) for line in trial.metrics_path.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for r in records:
        assert set(r) == METRIC_KEYS | ({"data_backend"} if r["epoch"] == 1 else set())
        assert 0 <= r["val_top1"] <= r["val_top5"] <= 100 and 0 <= r["train_top1"] <= 100
        assert r["images_per_second"] > 0 and r["epoch_seconds"] > 0 and r["sigma"] == {}
    assert [r["lr"] for r in records] == pytest.approx([0.05, 0.05, 0.01])  # multistep x0.2 at epoch 2

    summary = json.loads(trial.summary_path.read_text())
    assert set(summary) == {"best_val_top1", "best_epoch", "final_val_top1", "final_val_top5", "folded_params",
                            "folded_flops", "epochs", "data_backend"}
    assert summary["data_backend"] == records[0]["data_backend"] == "pytorch"  # as tiny_spec asks
    assert summary["final_val_top1"] == records[-1]["val_top1"]
    assert summary["best_val_top1"] == max(r["val_top1"] for r in records)
    assert records[summary["best_epoch"] - 1]["val_top1"] == summary["best_val_top1"]
    params, flops = layers.count_params_flops(build_trial_model(tiny_spec()), input_shape=(1, 3, 32, 32))
    assert (summary["folded_params"], summary["folded_flops"]) == (params, flops)
    assert trial.is_done and trial.failure is None

    state = last_state(trial)  # weights_only=True: plain data and tensors only
    assert state["epoch"] == 3 and state["mlflow_run_id"] == "run-ref"
    assert TrialSpec.model_validate(state["spec"]) == tiny_spec()
    assert state["scheduler"]["last_epoch"] == 3 * 2
    assert set(state) >= {"model", "optimizer", "scheduler", "scaler", "rng", "best_val_top1"}
    assert torch.load(trial.prev_checkpoint, weights_only=True)["epoch"] == 2

def test_plateau_schedule_follows_the_val_loss_and_resumes_its_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # patience 0: every evaluation that does not lower the val loss by 1e-4 (relative) halves the lr
    spec = tiny_spec(epochs=6, steps=1, lr=0.5, schedule={"name": "plateau", "gamma": 0.5, "patience": 0})
    reference = new_trial(tmp_path, "plateau-ref", spec)
    train(spec, CPU, reference)
    records = reference.read_metrics()
    best, expected_lr = float("inf"), [0.5]
    for r in records:  # the lr each epoch should have used, from the logged val losses
        improved = r["val_loss"] < best * (1 - 1e-4)
        best = r["val_loss"] if improved else best
        expected_lr.append(expected_lr[-1] * (1.0 if improved else 0.5))
    assert [r["lr"] for r in records] == pytest.approx(expected_lr[:-1])
    assert 1 < len(set(expected_lr)) < len(expected_lr)  # some evaluations improve, some cut the lr
    state = last_state(reference)["scheduler"]
    assert (state["factor"], state["best"]) == (pytest.approx(expected_lr[-1] / 0.5), best)

    crashy = new_trial(tmp_path, "plateau-crash", spec)
    monkeypatch.setenv(FAULT_ENV, "crash:epoch=3")
    with pytest.raises(InjectedFault):
        train(spec, CPU, crashy)
    monkeypatch.delenv(FAULT_ENV)
    train(spec, CPU, crashy)
    for key in ("lr", "val_loss", "val_top1", "train_loss"):
        assert [r[key] for r in crashy.read_metrics()] == [r[key] for r in records], key
    resumed = last_state(crashy)["scheduler"]
    assert (resumed["factor"], resumed["best"], resumed["num_bad_evaluations"]) == (
        state["factor"], state["best"], state["num_bad_evaluations"])


def test_dataset_augment_reaches_the_train_loader_only(tmp_path: Path) -> None:
    for augment, padding in ((None, None), (True, 4), (False, None)):  # digits: not augmented by default
        dataset = DatasetSpec(name="digits", backend="pytorch", num_workers=0, augment=augment)
        spec = tiny_spec(epochs=1, steps=1).model_copy(update={"dataset": dataset})
        run = Trainer(spec, CPU, new_trial(tmp_path, f"augment-{augment}", spec))
        assert run.train_loader.dataset.transform.padding == padding
        assert run.val_loader.dataset.transform.padding is None


def test_the_backend_auto_chose_is_recorded_in_the_first_line_and_the_summary(tmp_path: Path) -> None:
    spec = tiny_spec(epochs=2, steps=1).model_copy(
        update={"dataset": DatasetSpec(name="digits", backend="auto", num_workers=0), "eval_every": 2})
    trial = new_trial(tmp_path, "auto", spec)
    run = Trainer(spec, CPU, trial)
    summary = run.run()
    # what the loaders are, not what the spec says: on this CPU `auto` serves digits with torchvision
    built = {type(loader).__module__.rpartition(".")[2] for loader in (run.train_loader, run.val_loader)}
    assert built == {"pytorch"}
    first, second = trial.read_metrics()
    assert first["data_backend"] == summary["data_backend"] == trial.read_summary()["data_backend"] == "pytorch"
    assert "data_backend" not in second  # one line says it; the others stay the per-epoch figures


def test_non_square_images_and_arch_knobs(tmp_path: Path) -> None:
    """LFW-Faces' 50x37 grey images (synthetic backend) through aconv_resnet with one block per stage."""
    spec = tiny_spec(epochs=1, steps=1, layer=LayerSpec(method="aconv", kernel_size=3, blocks_per_stage=1,
                                                        dropout=0.5))
    spec = spec.model_copy(update={"model": "aconv_resnet", "dataset": DatasetSpec(name="lfw-faces",
                                                                                    backend="synthetic")})
    spec = TrialSpec.model_validate(spec.model_dump())
    summary = train(spec, CPU, new_trial(tmp_path, "faces", spec))
    model = build_trial_model(spec)
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.modules()) == 4
    params, flops = layers.count_params_flops(layers.reparameterize_model(model), input_shape=(1, 1, 50, 37))
    assert (summary["folded_params"], summary["folded_flops"]) == (params, flops)
    assert summary["data_backend"] == "synthetic"


def test_aconv_sigmas_stay_clipped_after_steps(tmp_path: Path) -> None:
    # A large lr pushes sigmas started well inside [1/3, 3] against the bounds; the clamp must hold them.
    layer = LayerSpec(method="aconv", aconv_sigma_init=(0.5, 2.5))
    spec = tiny_spec(epochs=1, steps=3, layer=layer, lr=2.0, grad_clip=1.0)
    run = Trainer(spec, CPU, new_trial(tmp_path, "aconv", spec))
    run.run()
    sigmas = [m for m in run.model.modules() if isinstance(m, layers.AdaptiveConv2d)]
    assert sigmas
    at_bound = 0
    for module in sigmas:
        lo, hi = module.sigma_clip
        assert bool(((module.sigma >= lo) & (module.sigma <= hi)).all())
        at_bound += int(((module.sigma == lo) | (module.sigma == hi)).sum())
    assert at_bound > 0  # the clamp did act
    record = run.trial_dir.read_metrics()[0]
    assert any(key.startswith("aconv.") and key.endswith(".max") for key in record["sigma"])


def test_orth_term_is_added_to_the_loss(tmp_path: Path) -> None:
    # One step per run: train_loss is the loss at the initial weights, so the difference is the orth term.
    plain = tiny_spec(epochs=1, steps=1)
    orth = tiny_spec(epochs=1, steps=1, layer=LayerSpec(orth=True, orth_weight=0.5))
    train(plain, CPU, new_trial(tmp_path, "plain", plain))
    train(orth, CPU, new_trial(tmp_path, "orth", orth))
    loss_plain = TrialDir(tmp_path / "plain").read_metrics()[0]["train_loss"]
    loss_orth = TrialDir(tmp_path / "orth").read_metrics()[0]["train_loss"]
    torch.manual_seed(orth.seed)
    expected = layers.orth_loss(build_trial_model(orth), 0.5).item()
    assert expected > 0
    assert loss_orth - loss_plain == pytest.approx(expected, rel=1e-4)


def ddp_rank(spec_json: dict, trial_path: str) -> dict:
    """One rank of a DDP trial, run inside a submitit task: returns its view of the finished model."""
    torch.set_num_threads(1)
    dist = setup_distributed()
    try:
        spec = TrialSpec.model_validate(spec_json)
        run = Trainer(spec, dist, TrialDir(trial_path))
        summary = run.run()
        state = {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}
        return {"rank": dist.rank, "world_size": dist.world_size, "backend": dist.backend, "state": state,
                "summary": summary, "train_images": run.train_loader.num_samples}
    finally:
        teardown_distributed()


@pytest.mark.slow
def test_ddp_two_ranks_through_submitit_local_executor(tmp_path: Path) -> None:
    spec = tiny_spec(epochs=2, steps=2, world_size=2, batch_size=8)
    trial = new_trial(tmp_path, "ddp", spec)
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(tasks_per_node=2, timeout_min=10)
    job = executor.submit(ddp_rank, spec.model_dump(mode="json"), str(trial.path))
    results = sorted(job.results(), key=lambda r: r["rank"])
    assert [(r["rank"], r["world_size"], r["backend"]) for r in results] == [(0, 2, "gloo"), (1, 2, "gloo")]
    assert_same_weights(results[0]["state"], results[1]["state"])  # parameters and (synchronised) buffers
    assert_same_weights(results[0]["state"], last_state(trial)["model"])
    records = trial.read_metrics()
    assert [r["epoch"] for r in trial.iter_metrics()] == [1, 2]  # rank 0 alone writes
    # global throughput counts both ranks' images: 2 ranks x 2 steps x 8 images per epoch
    assert all(r["images_per_second"] * r["epoch_seconds"] >= 32 for r in records)
    assert results[0]["summary"]["final_val_top1"] == results[1]["summary"]["final_val_top1"]
    assert trial.is_done
