"""shared/paths.py: which server paths and references a request may name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.paths import (
    ADAPTER_FOLDER,
    AllowedRoots,
    RefusedReference,
    check_loadable,
    model_folder,
    own_folder,
    resolve_data_file,
    resolve_model,
)
from shared.settings import CommonSettings

ROOTS = "(MODELS_DIR, DATASETS_DIR, JOBS_DIR, IMPORT_DIR)"


@pytest.fixture
def roots(tmp_path: Path) -> AllowedRoots:
    """Roots ``models``, ``datasets``, ``jobs``, ``imports`` in tmp_path; ``outside`` beside them
    holds a model and a file."""
    for name in ("models", "datasets", "jobs", "imports", "outside"):
        (tmp_path / name).mkdir()
    (tmp_path / "models" / "base").mkdir()
    (tmp_path / "models" / "base" / "config.json").write_text("{}")
    (tmp_path / "imports" / "data.jsonl").write_text("{}\n")
    (tmp_path / "outside" / "config.json").write_text("{}")
    (tmp_path / "outside" / "secret.jsonl").write_text("{}\n")
    common = CommonSettings(
        models_dir=tmp_path / "models",
        datasets_dir=tmp_path / "datasets",
        jobs_dir=tmp_path / "jobs",
        import_dir=tmp_path / "imports",
    )
    return AllowedRoots.of(common)


def test_files_under_the_roots_are_found_resolved(roots: AllowedRoots, tmp_path: Path) -> None:
    data = tmp_path / "imports" / "data.jsonl"
    assert roots.existing(str(data)) == data
    assert roots.existing(str(tmp_path / "jobs" / ".." / "imports" / "data.jsonl")) == data
    (tmp_path / "imports" / "link.jsonl").symlink_to(data)  # a link inside the roots is fine
    assert roots.existing(str(tmp_path / "imports" / "link.jsonl")) == data


def test_outside_missing_and_escaping_paths_get_one_message(
    roots: AllowedRoots, tmp_path: Path
) -> None:
    (tmp_path / "imports" / "out.jsonl").symlink_to(tmp_path / "outside" / "secret.jsonl")
    (tmp_path / "imports" / "loop").symlink_to(tmp_path / "imports" / "loop")
    names = [
        str(tmp_path / "outside" / "secret.jsonl"),  # exists, outside
        str(tmp_path / "outside" / "missing.jsonl"),  # missing, outside
        str(tmp_path / "imports" / "missing.jsonl"),  # missing, inside
        str(tmp_path / "imports" / ".." / "outside" / "secret.jsonl"),  # climbs out
        str(tmp_path / "imports" / "out.jsonl"),  # a link out
        str(tmp_path / "imports" / "loop"),  # a link loop
        "/etc/passwd",
        "~nosuchuser/x",
        "bad\0name",
    ]
    messages = set()
    for name in names:
        with pytest.raises(RefusedReference) as refused:
            roots.existing(name)
        messages.add(str(refused.value).replace(repr(name), "<name>"))
    assert messages == {f"<name> is not a file under an allowed folder {ROOTS}"}


def test_models_are_folders_names_or_hub_ids(roots: AllowedRoots, tmp_path: Path) -> None:
    base = str(tmp_path / "models" / "base")
    assert resolve_model(base, roots) == base
    assert resolve_model("base", roots) == base
    assert resolve_model("org/model", roots) == "org/model"
    with pytest.raises(RefusedReference, match="nor a Hub id"):
        resolve_model("unknown", roots)
    with pytest.raises(RefusedReference, match="under an allowed folder"):
        resolve_model("org/model", roots, hub_ids=False)
    with pytest.raises(RefusedReference, match="under an allowed folder"):
        resolve_model(str(tmp_path / "outside"), roots)  # holds config.json, but outside
    with pytest.raises(RefusedReference, match=r"is not a model folder \(no config\.json\)"):
        resolve_model(str(tmp_path / "imports"), roots)  # inside: a precise message
    with pytest.raises(RefusedReference, match=r"no adapter_config\.json"):
        model_folder(base, roots, ADAPTER_FOLDER)
    os.symlink(tmp_path / "outside", tmp_path / "models" / "linked")
    with pytest.raises(RefusedReference, match="neither a model under MODELS_DIR"):
        resolve_model("linked", roots)


def test_recorded_models_are_hub_ids_or_folders_under_the_roots(
    roots: AllowedRoots, tmp_path: Path
) -> None:
    assert check_loadable("org/model", roots) == "org/model"
    assert check_loadable("gpt2", roots) == "gpt2"
    assert check_loadable(str(tmp_path / "models" / "base"), roots).endswith("base")
    for outside in (str(tmp_path / "outside"), "../" * 20 + "etc", "/etc"):
        with pytest.raises(RefusedReference, match="under an allowed folder"):
            check_loadable(outside, roots)


def test_dataset_ids_become_their_built_file(roots: AllowedRoots, tmp_path: Path) -> None:
    built = tmp_path / "datasets" / "ds-1"
    built.mkdir()
    (built / "dataset.jsonl").write_text("{}\n")
    store = {
        "ds-1": {"status": "succeeded", "path": str(built)},
        "ds-2": {"status": "running", "path": str(built)},
        "ds-3": {"status": "succeeded", "path": str(tmp_path / "outside")},
    }
    assert resolve_data_file("ds-1", roots, store) == built / "dataset.jsonl"
    for name, says in (
        ("ds-2", "not ready"),
        ("ds-3", "has no dataset.jsonl"),
        ("ds-4", "unknown"),
    ):
        with pytest.raises(RefusedReference, match=says):
            resolve_data_file(name, roots, store)


def test_own_folders(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    assert own_folder(jobs / "ftjob-1", jobs) == jobs / "ftjob-1"
    for elsewhere in (jobs, jobs / "a" / "b", jobs / ".." / "x", "/etc/cron.d", None):
        assert own_folder(elsewhere, jobs) is None
