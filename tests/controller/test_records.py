"""The record core without HTTP: cancelling and paging records in Redis, naming bad fields."""

from __future__ import annotations

import pytest

from services.controller.field_errors import InvalidFields, problems_of, validated
from services.controller.records import cancel_record, page
from shared.evals import EvalRequest
from shared.merging import MergeRequest
from shared.stores import Stores
from shared.training import FineTuneRequest


@pytest.mark.parametrize(
    ("before", "after", "stopped"),
    [
        ({"status": "queued"}, {"status": "cancelled", "cancel_requested": True}, True),
        ({"status": "validating_files"}, {"status": "cancelled"}, True),
        (
            {"status": "queued", "lease_owner": "runner-1"},
            {"status": "queued", "cancel_requested": True},
            False,
        ),
        (
            {"status": "running", "lease_owner": "runner-1"},
            {"status": "running", "cancel_requested": True},
            False,
        ),
        ({"status": "succeeded"}, {"status": "succeeded", "cancel_requested": False}, False),
    ],
)
def test_cancel_stops_what_has_not_started_and_flags_the_rest(
    stores: Stores, before: dict, after: dict, stopped: bool
) -> None:
    stores.evals.create({"id": "eval-1", "cancel_requested": False, **before})
    outcome = cancel_record(stores.evals, "eval-1")
    assert outcome is not None
    assert outcome.stopped_now is stopped
    assert {k: outcome.record[k] for k in after} == after
    assert ("finished_at" in outcome.record) is stopped
    assert stores.evals.get("eval-1") == outcome.record


def test_cancel_of_nothing_is_none(stores: Stores) -> None:
    assert cancel_record(stores.merges, "merge-nope") is None


def test_pages_check_their_size_and_cursor(stores: Stores) -> None:
    for n in range(3):
        stores.merges.create({"id": f"merge-{n}", "status": "queued"})
    first = page(stores.merges.list, 2, None, "merge")
    assert [r["id"] for r in first["data"]] == ["merge-2", "merge-1"]
    assert (first["object"], first["has_more"]) == ("list", True)
    rest = page(stores.merges.list, 2, "merge-1", "merge")
    assert ([r["id"] for r in rest["data"]], rest["has_more"]) == (["merge-0"], False)
    with pytest.raises(InvalidFields) as caught:
        page(stores.merges.list, 101, None, "merge")
    assert str(caught.value) == "limit: must be between 1 and 100"
    with pytest.raises(InvalidFields) as caught:
        page(stores.merges.list, 2, "merge-x", "merge")
    assert (caught.value.param, str(caught.value)) == ("after", "after: unknown merge 'merge-x'")


@pytest.mark.parametrize(
    ("model", "data", "param", "text"),
    [
        (FineTuneRequest, {"training_file": "x"}, "model", "model: Field required"),
        (
            FineTuneRequest,
            {"model": "m", "training_file": "t", "hyperparameters": {"n_epochs": 0}},
            "hyperparameters.n_epochs",
            "hyperparameters.n_epochs: Input should be greater than 0",
        ),
        (
            FineTuneRequest,
            {
                "model": "m",
                "training_file": "t",
                "method": "full",
                "hyperparameters": {"lora_r": 8},
            },
            "hyperparameters.lora_r",
            "hyperparameters.lora_r: only applies to method lora or qlora",
        ),
        (
            EvalRequest,
            {"model": "m", "tasks": ["a"], "num_fewshot": {"b": 1}},
            "num_fewshot",
            "num_fewshot: names tasks not in the request: ['b']",
        ),
        (EvalRequest, {"model": "m", "tasks": 3}, "tasks", "tasks: Input should be"),
        (MergeRequest, {"base_model": "b", "adapter": "a", "name": "../x"}, "name", "not a valid"),
        (MergeRequest, ["not", "an", "object"], "body", "body: Input should be a valid dict"),
    ],
)
def test_bad_fields_are_named_as_the_caller_wrote_them(
    model: type, data: object, param: str, text: str
) -> None:
    with pytest.raises(InvalidFields) as caught:
        validated(model, data)
    assert caught.value.param == param
    assert text in str(caught.value)


def test_union_branches_are_one_problem_and_malformed_json_is_the_body() -> None:
    errors = [
        {"loc": ("tasks", "literal['leaderboard']"), "msg": "Input should be 'leaderboard'"},
        {"loc": ("tasks", "list[str]"), "msg": "Input should be a valid list"},
    ]
    assert problems_of(errors) == [
        ("tasks", "Input should be 'leaderboard' or Input should be a valid list")
    ]
    malformed = [{"type": "json_invalid", "loc": (3,), "msg": "x", "ctx": {"error": "Expecting"}}]
    assert problems_of(malformed) == [("body", "malformed JSON (Expecting)")]
