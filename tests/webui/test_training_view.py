"""What the training page shows, from API records: job requests, progress, curve, manifests."""

from __future__ import annotations

import pytest

from services.webui.training import (
    FormError,
    JobForm,
    Progress,
    dataset_rows,
    format_duration,
    histogram_rows,
    job_progress,
    job_request,
    job_summary,
    loss_rows,
    manifest_markdown,
    progress_html,
    ready_datasets,
)


def _metrics(**data: float) -> dict:
    return {"type": "metrics", "data": data}


def test_job_request_keeps_only_what_was_set() -> None:
    body = job_request(
        JobForm(
            base_model=" /models/base ",
            training_file="ds-1",
            method="full",
            n_epochs=2,
            learning_rate=0,
            lora_r=8,
            max_steps=None,
            suffix=" mine ",
            merge=True,
        )
    )
    assert body == {
        "model": "/models/base",
        "training_file": "ds-1",
        "method": "full",
        "hyperparameters": {"n_epochs": 2.0, "batch_size": 4, "max_length": 2048},
        "merge": True,
        "validation_split": 0.02,
        "suffix": "mine",
    }
    lora = job_request(JobForm("m", "f.jsonl", learning_rate=1e-3, max_steps=10, lora_r=16))
    assert (
        lora["hyperparameters"] | {"learning_rate": 1e-3, "max_steps": 10, "lora_r": 16}
        == (lora["hyperparameters"])
    )
    assert "suffix" not in lora


@pytest.mark.parametrize(
    ("form", "field"),
    [(JobForm("", "ds-1"), "Base model"), (JobForm("m", "  "), "Dataset")],
)
def test_job_request_names_the_missing_field(form: JobForm, field: str) -> None:
    with pytest.raises(FormError, match=f"^{field}:"):
        job_request(form)


def test_progress_by_steps_epochs_and_terminal_states() -> None:
    events = [_metrics(step=5, loss=2.0, epoch=0.25, eta_s=30.0)]
    by_steps = job_progress({"status": "running", "hyperparameters": {"max_steps": 20}}, events)
    assert by_steps == Progress(0.25, 5, 30.0, "running")
    by_epochs = job_progress({"status": "running", "hyperparameters": {"n_epochs": 2}}, events)
    assert by_epochs.fraction == 0.125
    assert job_progress({"status": "queued"}, []) == Progress(0.0, None, None, "queued")
    assert job_progress({"status": "succeeded"}, events).fraction == 1.0
    cancelled = job_progress({"status": "cancelled", "hyperparameters": {"max_steps": 20}}, events)
    assert cancelled.fraction == 0.25 and cancelled.eta_s is None


def test_progress_bar_html_carries_state_fraction_and_eta() -> None:
    html = progress_html(Progress(0.4, 8, 125.0, "running"))
    assert 'data-status="running"' in html and 'data-fraction="0.4000"' in html
    assert "width: 40%" in html
    assert "running · step 8 · 40% · ETA 2 min 05 s" in html
    assert "ETA" not in progress_html(Progress(1.0, 20, 0.0, "succeeded"))
    assert [format_duration(s) for s in (0.2, 59, 3600 + 120)] == ["1 s", "59 s", "1 h 02 min"]


def test_loss_rows_separate_train_and_eval() -> None:
    events = [
        {"type": "message", "message": "started"},
        _metrics(step=1, loss=3.0),
        _metrics(step=2, loss=2.5),
        _metrics(step=2, loss=2.5, eval_loss=2.7),
    ]
    assert loss_rows(events) == [
        {"step": 1, "loss": 3.0, "series": "train"},
        {"step": 2, "loss": 2.5, "series": "train"},
        {"step": 2, "loss": 2.7, "series": "eval"},
    ]


def test_job_summary_names_result_and_error() -> None:
    job = {"id": "ftjob-1", "method": "lora", "model": "base", "status": "succeeded"}
    assert "Result: `base-x`" in job_summary({**job, "fine_tuned_model": "base-x"})
    failed = {**job, "status": "failed", "error": {"message": "out of memory at step 3"}}
    assert "Error: out of memory at step 3" in job_summary(failed)


MANIFEST = {
    "records": 90,
    "rejected": 10,
    "tokenizer": "tok",
    "max_length": 2048,
    "token_lengths": {"count": 90, "min": 5, "median": 40, "p95": 300, "max": 900, "mean": 61.5},
    "stages": {
        "convert": {"in": 100, "kept": 95, "dropped": {"malformed": 5}},
        "filter": {"in": 95, "kept": 90, "dropped": {"language": 3, "too_short": 2}},
    },
    "dropped_by_reason": {"language": 3, "malformed": 5, "too_short": 2},
}


def test_manifest_shows_counts_reasons_and_lengths() -> None:
    dataset = {"id": "ds-1", "status": "succeeded", "spec": {"sources": ["alpaca"]}}
    text = manifest_markdown({**dataset, "manifest": MANIFEST})
    assert "### ds-1 (succeeded)" in text and "`alpaca`" in text
    assert "**90** samples, 10 rejected" in text
    assert "| filter | 95 | 90 | 5 |" in text
    assert "| malformed | 5 |" in text and "| language | 3 |" in text
    assert "Token lengths: min 5, median 40, mean 61.5, p95 300, max 900" in text
    running = manifest_markdown(
        {**dataset, "status": "running", "progress": {"convert": {"done": 3, "total": None}}}
    )
    assert "Progress: convert 3/?" in running and "appears once the ingestion" in running


def test_histogram_rows_are_the_ingestors_power_of_two_buckets() -> None:
    histogram = [{"le": 64, "count": 10}, {"le": 128, "count": 5}]
    rows = histogram_rows({"token_lengths": {"histogram": histogram}})
    assert rows == [{"tokens": "≤64", "samples": 10}, {"tokens": "≤128", "samples": 5}]


def test_no_histogram_no_bars() -> None:
    assert histogram_rows(MANIFEST) == []


def test_dataset_lists() -> None:
    datasets = [
        {
            "id": "ds-1",
            "status": "succeeded",
            "spec": {"sources": ["/x/y/a.jsonl"]},
            "manifest": {"records": 3},
        },
        {"id": "ds-2", "status": "queued", "spec": {"sources": ["alpaca", "code"]}},
    ]
    assert dataset_rows(datasets) == [
        ["ds-1", "succeeded", "a.jsonl", 3],
        ["ds-2", "queued", "alpaca, code", ""],
    ]
    assert ready_datasets(datasets) == ["ds-1"]


def test_the_empty_loss_curve_has_a_named_series_not_a_number_scale() -> None:
    """An untyped empty frame made the series a number: a legend from Infinity to -Infinity."""
    import gradio as gr

    from services.webui.training_actions import EMPTY_CURVE, _curve

    plot = gr.LinePlot(EMPTY_CURVE, x="step", y="loss", color="series")
    for frame in (EMPTY_CURVE, _curve([{"step": 1, "loss": 2.0, "series": "train"}])):
        assert plot.postprocess(frame).datatypes["series"] == "nominal"
