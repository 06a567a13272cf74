"""The multi-GPU and offload flags: planning (pure, with made-up GPUs), a real CPU + disk split
of the tiny model through accelerate, and the seed's ``cli --num-gpus 2`` on a machine without
a GPU. What needs real GPUs (a split over two, 8-bit with fp32 CPU offload) is planned here and
only checked on paper: README, "Multi-GPU and offload flags"."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.model_worker.engine import ModelEngine
from services.model_worker.generation import generate_stream
from services.model_worker.loader import LoadedModel, ModelLoadError, load_model
from services.model_worker.placement import (
    GIB,
    Placement,
    PlacementError,
    PlacementOptions,
    apply_visible_gpus,
    memory_bytes,
    plan_placement,
)
from services.model_worker.template_choice import conversation_for
from shared.schemas import GenerateParams
from tests.model_worker.test_cli import run_cli


def plan(gpus: int = 0, free: int = 10 * GIB, **options: object) -> Placement:
    return plan_placement(
        PlacementOptions(**options),  # type: ignore[arg-type]
        gpus,
        lambda _: free,
        available_cpu_bytes=lambda: 64 * GIB,
    )


def test_no_gpu_with_device_auto_runs_on_cpu_with_a_warning() -> None:
    placement = plan(num_gpus=2)
    assert placement.device == "cpu" and placement.device_map is None
    assert placement.warnings == [
        "--num-gpus 2 asked for, but no CUDA GPU is visible: running on cpu"
    ]
    assert plan().warnings == []


@pytest.mark.parametrize(
    ("gpus", "options", "words"),
    [
        (0, {"device": "cuda"}, "--device cuda asked for, but no CUDA GPU is visible"),
        (0, {"device": "cuda", "num_gpus": 2}, "--device cuda asked for, but no CUDA GPU"),
        (1, {"device": "cuda", "num_gpus": 2}, "--num-gpus 2 asked for, but 1 CUDA GPU(s)"),
        (1, {"num_gpus": 2}, "--num-gpus 2 asked for, but 1"),
        (2, {"num_gpus": 2, "max_gpu_memory": "13 apples"}, "--max-gpu-memory '13 apples'"),
        (0, {"device": "mps"}, "MPS is not available"),
    ],
)
def test_what_the_machine_cannot_do_is_an_error_naming_the_flags(
    gpus: int, options: dict, words: str
) -> None:
    with pytest.raises(PlacementError, match=words.replace("(", r"\(").replace(")", r"\)")):
        plan(gpus, **options)


def test_gpus_set_cuda_visible_devices_and_must_cover_num_gpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    apply_visible_gpus(PlacementOptions(gpus="0,2", num_gpus=2))
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,2"
    with pytest.raises(PlacementError, match="fewer than --num-gpus 2"):
        apply_visible_gpus(PlacementOptions(gpus="1", num_gpus=2))


def test_one_gpu_loads_whole_then_moves() -> None:
    assert plan(1).device_map is None and plan(1).device == "cuda"
    assert plan(1, load_8bit=True).device_map == {"": 0}


def test_several_gpus_with_a_cap_split_automatically_under_it() -> None:
    placement = plan(2, num_gpus=2, max_gpu_memory="13GiB")
    assert placement.device_map == "auto"
    assert placement.max_memory == {0: 13 * GIB, 1: 13 * GIB}
    assert placement.from_pretrained_kwargs() == {
        "device_map": "auto",
        "max_memory": {0: 13 * GIB, 1: 13 * GIB},
    }


def test_sizes_read_as_accelerate_reads_them_fastchats_spelling_too() -> None:
    assert memory_bytes("13Gib", "--max-gpu-memory") == 13 * GIB  # FastChat's README spelling
    assert memory_bytes("500MB", "--max-cpu-memory") == 500 * 10**6
    assert memory_bytes("2048", "--max-cpu-memory") == 2048


def test_several_gpus_without_a_cap_fill_85_percent_of_free_memory_in_order() -> None:
    placement = plan(4, free=10 * GIB, num_gpus=2)
    assert placement.device_map == "sequential"
    assert placement.max_memory == {0: int(8.5 * GIB), 1: int(8.5 * GIB)}


def test_cpu_offloading_adds_the_cpu_and_keeps_8bit_offload_in_fp32() -> None:
    placement = plan(1, max_gpu_memory="2GiB", cpu_offloading=True, load_8bit=True)
    assert placement.max_memory == {0: 2 * GIB, "cpu": 64 * GIB}
    assert placement.fp32_cpu_offload
    capped = plan(1, cpu_offloading=True, max_cpu_memory="4GiB")
    assert capped.max_memory == {0: int(8.5 * GIB), "cpu": 4 * GIB}
    assert not capped.fp32_cpu_offload
    ignored = plan(0, cpu_offloading=True)
    assert ignored.device_map is None
    assert ignored.warnings == ["--cpu-offloading needs CUDA GPUs; ignored on cpu"]


def test_a_cpu_cap_offloads_the_rest_to_disk() -> None:
    placement = plan(0, max_cpu_memory="300000", offload_folder="/tmp/x")
    assert (placement.device_map, placement.max_memory) == ("auto", {"cpu": 300000})
    assert placement.offload_folder == "/tmp/x"


def test_accelerate_plans_a_cpu_and_disk_split_of_the_tiny_model(tiny_model_dir: Path) -> None:
    from accelerate import infer_auto_device_map, init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_model_dir))
    device_map = infer_auto_device_map(
        model, max_memory=plan(0, max_cpu_memory="300000").max_memory
    )
    assert set(device_map.values()) == {"cpu", "disk"}


def test_a_model_split_between_cpu_and_disk_generates_and_embeds_as_a_whole_one(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    options = PlacementOptions(
        device="cpu", max_cpu_memory="300000", offload_folder=str(tmp_path / "offload")
    )
    # fp32: the memory cap is sized for it (auto would be bf16 on CPUs with AVX512-BF16).
    split = load_model(str(tiny_model_dir), dtype="float32", placement=options)
    whole = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    assert set(split.model.hf_device_map.values()) == {"cpu", "disk"}
    # Safetensors weights offloaded to disk are read from the checkpoint itself, not copied.
    params = GenerateParams(prompt="Hello", max_new_tokens=6, temperature=0)

    def final(loaded: LoadedModel) -> dict:
        return list(
            generate_stream(loaded.model, loaded.tokenizer, params, context_len=loaded.context_len)
        )[-1]

    assert final(split)["text"] == final(whole)["text"]
    conv = conversation_for(str(tiny_model_dir), split.tokenizer)

    async def batched() -> tuple[dict, list[float]]:
        engine = ModelEngine(split, ["tiny"], conv)
        try:
            return await engine.generate(params), (await engine.embed(["Hello"])).vectors[0]
        finally:
            engine.shutdown()

    answer, vector = asyncio.run(batched())
    assert answer["text"] == final(whole)["text"]
    engine = ModelEngine(whole, ["tiny"], conv, mode="sequential")
    try:
        expected = asyncio.run(engine.embed(["Hello"])).vectors[0]
    finally:
        engine.shutdown()
    assert vector == pytest.approx(expected, abs=1e-6)


def test_an_explicit_cuda_device_on_a_cpu_machine_is_a_load_error(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="CUDA GPU"):
        load_model(str(tiny_model_dir), placement=PlacementOptions(device="cuda"))


def test_the_seed_readme_line_num_gpus_2_runs_on_a_cpu_machine(tiny_model_dir: Path) -> None:
    proc = run_cli(tiny_model_dir, "Hello there\n!exit\n", "--style", "simple", "--num-gpus", "2")
    assert proc.returncode == 0, proc.stderr
    assert "--num-gpus 2 asked for, but no CUDA GPU is visible: running on cpu" in proc.stderr
    assert proc.stdout.count("assistant: ") == 1


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--device", "cuda", "--num-gpus", "2"], "--device cuda asked for, but no CUDA GPU"),
        (["--gpus", "0", "--num-gpus", "2"], "--gpus '0' lists fewer than --num-gpus 2"),
        (["--max-gpu-memory", "lots"], "--max-gpu-memory: Value error, 'lots' is not a memory"),
    ],
)
def test_cli_flags_the_machine_cannot_honour_exit_2_naming_them(
    tiny_model_dir: Path, flags: list[str], words: str
) -> None:
    proc = run_cli(tiny_model_dir, "", *flags)
    assert proc.returncode == 2
    assert words in proc.stderr


@pytest.mark.parametrize("flags", [["--load-8bit"], ["--device", "cpu"]])
def test_the_seed_readme_lines_load_8bit_and_device_cpu_run(
    tiny_model_dir: Path, flags: list[str]
) -> None:
    proc = run_cli(tiny_model_dir, "Hello there\n!exit\n", "--style", "simple", *flags)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("assistant: ") == 1


def test_mps_loads_whole_and_ignores_a_cpu_cap_with_a_warning() -> None:
    placement = plan_placement(PlacementOptions(max_cpu_memory="1GiB"), 0, lambda _: 0, mps=True)
    assert (placement.device, placement.device_map) == ("mps", None)
    assert placement.warnings == [
        "--max-cpu-memory applies to CPU and CUDA placement; ignored on mps"
    ]
