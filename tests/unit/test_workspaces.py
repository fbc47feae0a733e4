"""Which workspace a job gets: its app's warm one, or a fresh directory (worker.workspaces)."""

from __future__ import annotations

from pathlib import Path

from deployq.worker.workspaces import Workspaces, remove


def test_a_successful_build_leaves_its_workspace_to_the_apps_next_build(tmp_path: Path) -> None:
    spaces = Workspaces(tmp_path)
    first = spaces.take("web-1", "job-1-1")
    assert first.path == tmp_path / "job-1-1" and not first.reused
    first.path.mkdir()
    (first.path / "app.txt").write_text("1")
    assert spaces.done(first, reusable=True) == []
    # where it is: BuildKit keeps the last context of each path, a renamed one is new to it
    second = spaces.take("web-1", "job-2-1")
    assert second.reused and second.path == first.path
    assert (second.path / "app.txt").read_text() == "1"
    # another job of the app meanwhile gets a fresh directory, and leaves nothing behind
    beside = spaces.take("web-1", "job-3-1")
    assert beside.path == tmp_path / "job-3-1" and not beside.reused
    beside.path.mkdir()
    remove(spaces.done(beside, reusable=True))
    assert not beside.path.exists()
    assert spaces.done(second, reusable=True) == []
    assert spaces.take("web-1", "job-4-1").path == first.path


def test_a_failed_build_removes_the_warm_workspace(tmp_path: Path) -> None:
    spaces = Workspaces(tmp_path)
    first = spaces.take("web-1", "job-1-1")
    first.path.mkdir()
    remove(spaces.done(first, reusable=True))
    second = spaces.take("web-1", "job-2-1")
    remove(spaces.done(second, reusable=False))
    assert not second.path.exists()
    third = spaces.take("web-1", "job-3-1")
    assert not third.reused and third.path == tmp_path / "job-3-1"
    third.path.mkdir()
    remove(spaces.done(third, reusable=True))
    assert spaces.take("web-1", "job-4-1").path == third.path


def test_no_key_is_never_reused_and_the_least_recently_used_go_first(tmp_path: Path) -> None:
    spaces = Workspaces(tmp_path, warm_max=2)
    alone = spaces.take(None, "job-1-1")
    alone.path.mkdir()
    remove(spaces.done(alone, reusable=True))
    assert not alone.path.exists()
    for n, key in enumerate(["a", "b", "a", "c"]):
        job = spaces.take(key, f"job-{n}-1")
        job.path.mkdir(exist_ok=True)
        remove(spaces.done(job, reusable=True))
    # a's first build (job-0-1) was used again by job 2; b's went first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job-0-1", "job-3-1"]
