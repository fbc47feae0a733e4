"""The queue simulation behind expected start times (deployq.estimates)."""

from __future__ import annotations

import pytest

from deployq.estimates import MIN_REMAINING_S, Queued, Running, expected_starts

WEB, API, DOCS = 1, 2, 3


def test_jobs_of_one_app_wait_for_each_other_even_with_free_slots() -> None:
    starts = expected_starts(
        4,
        [],
        [Queued(10, WEB, 0, 1), Queued(11, WEB, 0, 1), Queued(12, WEB, 0, 1)],
        {WEB: 60.0},
    )
    assert starts == {10: 0.0, 11: 60.0, 12: 120.0}


def test_an_app_with_concurrency_two_runs_two_at_a_time() -> None:
    starts = expected_starts(4, [], [Queued(n, WEB, 0, 2) for n in range(4)], {WEB: 30.0})
    assert starts == {0: 0.0, 1: 0.0, 2: 30.0, 3: 30.0}


def test_capacity_limits_different_apps() -> None:
    starts = expected_starts(
        1, [], [Queued(10, WEB, 0, 1), Queued(11, API, 0, 1)], {WEB: 60.0, API: 10.0}
    )
    assert starts == {10: 0.0, 11: 60.0}


def test_running_jobs_hold_their_slot_and_app_until_their_usual_time_is_up() -> None:
    starts = expected_starts(
        2,
        [Running(1, WEB, elapsed_s=45.0), Running(2, API, elapsed_s=5.0)],
        [Queued(10, WEB, 0, 1), Queued(11, DOCS, 0, 1)],
        {WEB: 60.0, API: 100.0, DOCS: 20.0},
    )
    # web's running build ends in 15 s: its next job starts then; docs takes that same slot
    # after it (the api slot frees only in 95 s)
    assert starts == {10: 15.0, 11: 75.0}


def test_a_job_blocked_by_its_app_leaves_the_free_slot_to_the_jobs_behind_it() -> None:
    starts = expected_starts(
        2,
        [Running(1, WEB, elapsed_s=0.0)],
        [Queued(10, WEB, 0, 1), Queued(11, API, 0, 1)],
        {WEB: 100.0, API: 10.0},
    )
    assert starts == {10: 100.0, 11: 0.0}


def test_a_job_not_due_yet_starts_when_due() -> None:
    starts = expected_starts(1, [], [Queued(10, WEB, 30.0, 1)], {WEB: 10.0})
    assert starts == {10: 30.0}


def test_a_job_over_its_usual_time_is_still_expected_to_take_a_moment() -> None:
    starts = expected_starts(1, [Running(1, WEB, 500.0)], [Queued(10, API, 0, 1)], {WEB: 60.0})
    assert starts == {10: MIN_REMAINING_S}


def test_apps_without_history_take_the_fallback_time() -> None:
    starts = expected_starts(
        1, [], [Queued(10, WEB, 0, 1), Queued(11, API, 0, 1)], {}, fallback_s=40
    )
    assert starts == {10: 0.0, 11: pytest.approx(40.0)}


def test_full_servers_make_every_app_wait_for_a_slot() -> None:
    starts = expected_starts(
        1,
        [Running(1, DOCS, elapsed_s=50)],
        [Queued(10, WEB, 0, 1), Queued(11, API, 0, 1)],
        {WEB: 10.0, API: 10.0, DOCS: 60.0},
    )
    assert starts == {10: 10.0, 11: 20.0}


def test_a_job_in_retry_backoff_starts_once_due_behind_the_app_s_other_jobs() -> None:
    starts = expected_starts(  # claim order: due time first, so the retry comes last
        3,
        [Running(1, WEB, elapsed_s=0)],
        [Queued(11, WEB, 0, 2), Queued(10, WEB, 45.0, 2)],
        {},
        fallback_s=100,
    )
    assert starts == {11: 0.0, 10: 100.0}


def test_no_healthy_server_means_no_estimate() -> None:
    assert expected_starts(0, [], [Queued(10, WEB, 0, 1)], {WEB: 10.0}) == {}
