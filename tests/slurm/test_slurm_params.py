"""From resources + executor.slurm to sbatch settings (no cluster needed: sbatch's options are given)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from submitit.slurm.slurm import _make_sbatch_string

from orchestrator.spec.schema import ResourcesSpec, SlurmSpec
from slurm.params import sbatch_options, slurm_parameters, time_to_minutes

# A few of sbatch's long options, as `sbatch --help` lists them.
KNOWN = frozenset({"exclude", "nodelist", "mail-type", "reservation", "requeue", "exclusive", "comment",
                   "partition", "time", "nodes", "gpus-per-node", "mem", "signal", "output", "job-name"})


@pytest.mark.parametrize(("text", "minutes"), [
    ("30", 30), ("1:30", 2), ("01:00:00", 60), ("2:00:01", 121), ("1-0", 1440), ("1-2:30", 1590),
    ("0-00:00:30", 1), (" 10 ", 10),
])
def test_time_formats_become_whole_minutes(text: str, minutes: int) -> None:
    assert time_to_minutes(text) == minutes


@pytest.mark.parametrize("text", ["", "1h", "1:2:3:4", "-5", "0", "00:00:00", "a-1"])
def test_bad_time_names_the_key_and_the_formats(text: str) -> None:
    with pytest.raises(ValueError, match=r"^executor\.slurm\.time: .*got .*allowed: ") as err:
        time_to_minutes(text)
    assert "\n" not in str(err.value)


def params(slurm: SlurmSpec | None = None, resources: ResourcesSpec | None = None) -> dict:
    return slurm_parameters(slurm or SlurmSpec(), resources or ResourcesSpec(), name="t", known_options=KNOWN)


def test_resources_map_to_one_job_of_nodes_times_processes() -> None:
    p = params(SlurmSpec(partition="gpu", account="lab", qos="high", constraint="a100", time="12:00:00"),
               ResourcesSpec(nodes=2, gpus_per_node=4, cpus_per_process=8, mem_gb=64))
    assert p["nodes"] == 2 and p["ntasks_per_node"] == 4 and p["gpus_per_node"] == 4
    assert p["cpus_per_task"] == 8 and p["mem"] == "65536M" and p["time"] == 720
    assert (p["partition"], p["account"], p["qos"], p["constraint"]) == ("gpu", "lab", "high", "a100")
    assert p["job_name"] == "t" and p["stderr_to_stdout"] is True


def test_cpu_only_trial_asks_for_no_gpus_and_slurm_section_wins_over_resources() -> None:
    p = params(SlurmSpec(cpus_per_task=3, mem="10G"), ResourcesSpec(processes_per_node=2, mem_gb=1))
    assert "gpus_per_node" not in p and p["ntasks_per_node"] == 2
    assert p["cpus_per_task"] == 3 and p["mem"] == "10G"
    assert not {"partition", "account", "qos", "constraint"} & p.keys()


def test_additional_parameters_split_into_submitit_and_raw_sbatch_options() -> None:
    p = params(SlurmSpec(additional_parameters={"exclude": "n3", "mail_type": "END", "reservation": "r1",
                                                "requeue": "", "signal_delay_s": 300}))
    assert p["exclude"] == "n3" and p["mail_type"] == "END"  # submitit knows these
    assert p["additional_parameters"] == {"reservation": "r1", "requeue": True, "signal": "USR2@300"}
    assert "signal_delay_s" not in p


def test_checkpoint_signal_is_pinned_to_usr2_in_the_batch_script(tmp_path: Path) -> None:
    script = _make_sbatch_string(command="true", folder=tmp_path, **params())
    assert "#SBATCH --signal=USR2@90" in script.splitlines()
    assert "#SBATCH --open-mode=append" in script.splitlines()  # a requeued job appends to its log


def test_unknown_additional_parameter_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        params(SlurmSpec(additional_parameters={"exlude": "n3"}))
    message = str(err.value)
    assert message.startswith("executor.slurm.additional_parameters: unknown sbatch option 'exlude'")
    assert "allowed: " in message and "exclude" in message and "signal-delay-s" in message
    assert "partition" not in message.split("allowed: ")[1].split(", ")  # managed: not offered
    assert "\n" not in message


@pytest.mark.parametrize(("key", "instead"), [
    ("partition", "executor.slurm.partition"), ("gpus_per_node", "resources.gpus_per_node"),
    ("time", "executor.slurm.time"), ("output", "submitit"), ("signal", "signal_delay_s"),
])
def test_settings_convsweep_derives_are_refused_in_additional_parameters(key: str, instead: str) -> None:
    with pytest.raises(ValueError, match=rf"^executor\.slurm\.additional_parameters\.{key}: set by convsweep.*{instead}"):
        params(SlurmSpec(additional_parameters={key: "x"}))


@pytest.mark.skipif(shutil.which("sbatch") is None, reason="sbatch not installed (slurm/local/install.sh)")
@pytest.mark.slurm
def test_sbatch_options_come_from_this_clusters_sbatch(slurm_cluster: dict[str, str]) -> None:
    options = sbatch_options()
    assert {"exclude", "nodelist", "gpus-per-node", "reservation"} <= options
    assert "help" not in options and "usage" not in options
