"""Start estimates follow the claim loop: free slots, per-app serialisation, due times."""

from __future__ import annotations

from deployq.queue_eta import QueuedJob, RunningBuild, start_estimates


def test_a_job_behind_a_running_build_of_its_app_starts_after_it() -> None:
    starts = start_estimates(
        [QueuedJob(1, "web")],
        [RunningBuild("web", elapsed_s=10)],
        slots=4,
        build_s={"web": 30},
        concurrency={"web": 1},
    )
    assert starts == {1: 20.0}


def test_jobs_of_other_apps_take_the_free_slots_at_once() -> None:
    starts = start_estimates(
        [QueuedJob(1, "web"), QueuedJob(2, "api")],
        [RunningBuild("web", elapsed_s=10)],
        slots=2,
        build_s={"web": 30, "api": 60},
        concurrency={"web": 1, "api": 1},
    )
    assert starts == {1: 20.0, 2: 0.0}


def test_pushes_of_one_app_queue_one_after_another() -> None:
    starts = start_estimates(
        [QueuedJob(1, "web"), QueuedJob(2, "web"), QueuedJob(3, "web")],
        [],
        slots=8,
        build_s={"web": 30},
        concurrency={"web": 1},
    )
    assert starts == {1: 0.0, 2: 30.0, 3: 60.0}


def test_full_servers_make_every_app_wait_for_a_slot() -> None:
    starts = start_estimates(
        [QueuedJob(1, "a"), QueuedJob(2, "b")],
        [RunningBuild("c", elapsed_s=50)],
        slots=1,
        build_s={"a": 10, "b": 10, "c": 60},
        concurrency={},
    )
    assert starts == {1: 10.0, 2: 20.0}


def test_an_app_without_a_limit_and_a_retry_backoff() -> None:
    starts = start_estimates(
        [QueuedJob(1, "web", due_in_s=45), QueuedJob(2, "web")],
        [RunningBuild("web", elapsed_s=0)],
        slots=3,
        build_s={},
        concurrency={"web": None},
        default_build_s=100,
    )
    assert starts == {1: 45.0, 2: 0.0}


def test_no_healthy_server_means_no_estimate() -> None:
    assert start_estimates([QueuedJob(1, "web")], [], slots=0, build_s={}, concurrency={}) == {}
