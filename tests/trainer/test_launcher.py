"""Jobs over several processes: the launch command, and a real 2-rank run on CPU (torchrun)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.trainer.errors import TrainingError
from services.trainer.launcher import launch_command, launch_processes, run_launched
from tests.trainer.builders import EventLog, repetitive_dataset, tiny_request, write_dataset


def test_a_node_with_several_gpus_gets_one_process_per_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRAINER_LAUNCH_PROCESSES", raising=False)
    request = tiny_request(tmp_path, tmp_path / "d.json")
    assert launch_processes(request, node_gpus=0) == 1
    assert launch_processes(request, node_gpus=1) == 1
    assert launch_processes(request, node_gpus=8) == 8
    assert launch_processes(request.model_copy(update={"gpus": 4}), node_gpus=8) == 4


def test_the_gpu_launch_uses_accelerate_with_fsdp_for_full_finetunes(tmp_path: Path) -> None:
    full = tiny_request(tmp_path, tmp_path / "d.json", method="full")
    command, events = launch_command(full, tmp_path / "job", 4, use_gpus=True)
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    config = yaml.safe_load((tmp_path / "job/launch/accelerate.yaml").read_text())
    assert (config["distributed_type"], config["num_processes"]) == ("FSDP", 4)
    assert config["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    assert command[-8:] == [
        "services.trainer.train",
        "--request-file",
        str(tmp_path / "job/launch/request.json"),
        "--output-dir",
        str(tmp_path / "job"),
        "--events-file",
        str(events),
        "--no-progress",
    ]
    lora = tiny_request(tmp_path, tmp_path / "d.json")
    launch_command(lora, tmp_path / "job2", 2, use_gpus=True)
    config = yaml.safe_load((tmp_path / "job2/launch/accelerate.yaml").read_text())
    assert config["distributed_type"] == "MULTI_GPU"


def test_two_ranks_train_report_events_and_publish_the_result(
    learnable_model_dir: Path, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "train.json", repetitive_dataset())
    request = tiny_request(learnable_model_dir, data, hyperparameters={"max_steps": 4})
    events = EventLog()
    result = run_launched(request, tmp_path / "job", events, lambda: False, 2, use_gpus=False)
    assert result["status"] == "succeeded"
    assert (Path(result["final_dir"]) / "adapter_config.json").is_file()
    assert sorted(events.losses()) == [1, 2, 3, 4]
    assert events.of_type("checkpoint")
    assert "launching 2 training processes (CPU, gloo)" in events.messages()


def test_a_failing_launch_reports_the_trainers_message(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    request = tiny_request(tiny_model_dir, tmp_path / "missing.json")
    with pytest.raises(TrainingError) as info:
        run_launched(request, tmp_path / "job", EventLog(), lambda: False, 2, use_gpus=False)
    assert "missing.json" in info.value.message
