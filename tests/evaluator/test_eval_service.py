"""Evaluations end to end: controller REST API -> Redis -> a real evaluator Celery worker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.evaluator.conftest import capitals_docs, expected_scores
from tests.support import Stack, wait_record


@pytest.fixture
def stack(
    start_stack: Callable[..., Stack], tmp_path: Path, tiny_model_dir: Path, eval_data_dir: Path
) -> str:
    """A controller and an evaluator on the CPU, with the tiny model's folder as MODELS_DIR and
    the repo's offline task data; returns the controller's URL."""
    stack = start_stack(
        {
            "MODELS_DIR": str(tiny_model_dir.parent),
            "EVAL_DATA_DIR": str(eval_data_dir),
            "EVAL_OUTPUT_DIR": str(tmp_path / "evals"),
            "EVAL_DEVICE": "cpu",
        }
    )
    stack.start("evaluator")
    return stack.url


def wait_eval(api: str, eval_id: str, timeout: float = 120) -> dict:
    return wait_record(f"{api}/v1/evals/{eval_id}", {"succeeded", "failed"}, timeout)


@pytest.mark.slow
def test_an_evaluation_runs_and_its_results_are_kept_per_model(
    stack: str, tiny_model_dir: Path
) -> None:
    created = httpx.post(
        f"{stack}/v1/evals",
        json={"model": tiny_model_dir.name, "tasks": ["capitals_mc"], "num_fewshot": 0},
    )
    assert created.status_code == 201, created.text
    assert created.json()["model_path"] == str(tiny_model_dir.resolve())
    record = wait_eval(stack, created.json()["id"])
    assert record["status"] == "succeeded", record
    assert record["progress"] == {"completed_tasks": 1, "total_tasks": 1, "current_task": None}
    expected = expected_scores(tiny_model_dir, capitals_docs())
    assert record["results"]["tasks"][0]["value"] == expected["acc_norm"]
    assert Path(record["output_file"]).is_file()

    listed = httpx.get(f"{stack}/v1/evals").json()
    assert [r["id"] for r in listed["data"]] == [record["id"]]
    board = httpx.get(f"{stack}/v1/evals/results").json()
    assert board["models"][tiny_model_dir.name]["eval_id"] == record["id"]
    assert board["table"]["rows"] == [
        {"task": "capitals_mc", tiny_model_dir.name: expected["acc_norm"]}
    ]

    # Offline, a task whose dataset is not in the data folder fails early, naming it.
    created = httpx.post(
        f"{stack}/v1/evals", json={"model": str(tiny_model_dir), "tasks": ["offline_mc"]}
    )
    failed = wait_eval(stack, created.json()["id"], timeout=60)
    assert failed["status"] == "failed"
    assert "camel-chat/not-downloaded-mc" in failed["error"]["message"]


BAD_REQUESTS = [
    ({"tasks": ["capitals_mc"]}, "model"),
    ({"model": "nowhere-model"}, "model"),
    ({"model": "tiny-llama", "tasks": []}, "tasks"),
    ({"model": "tiny-llama", "limit": 0}, "limit"),
    ({"model": "tiny-llama", "num_fewshot": -2}, "num_fewshot"),
    ({"model": "tiny-llama", "tasks": ["a"], "num_fewshot": {"b": 1}}, "num_fewshot"),
    ({"model": "tiny-llama", "data_dir": "/no/such/folder"}, "data_dir"),
    ({"model": "tiny-llama", "data_dir": "/etc"}, "data_dir"),
    ({"model": "/etc"}, "model"),
    ({"model": "../../../../../../../etc"}, "model"),
    ({"model": "tiny-llama", "colour": "red"}, "colour"),
]


def test_bad_requests_get_400_naming_the_field(
    controller: Callable[..., str], tiny_model_dir: Path
) -> None:
    api = controller(env={"MODELS_DIR": str(tiny_model_dir.parent)})
    for body, param in BAD_REQUESTS:
        response = httpx.post(f"{api}/v1/evals", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["param"] == param, (body, response.json())
    missing = httpx.get(f"{api}/v1/evals/eval-nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "eval_id"
