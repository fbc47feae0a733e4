"""Once a deploy's switch has begun it runs to its end, even when the step is cancelled
(an operator's cancel, the job timeout, the worker's SIGTERM): never half switched."""

from __future__ import annotations

import asyncio

import pytest

from deployq.worker.deploy import finish_even_if_cancelled


async def test_a_cancel_during_the_switch_waits_for_it_then_cancels_the_step() -> None:
    began, may_end = asyncio.Event(), asyncio.Event()
    done: list[str] = []

    async def switch() -> str:
        began.set()
        await may_end.wait()
        done.append("switched")
        return "switched"

    step = asyncio.create_task(finish_even_if_cancelled(switch()))
    await began.wait()
    step.cancel()  # e.g. SIGTERM: the pool cancels the job's task
    await asyncio.sleep(0)
    step.cancel()  # and again (a forced cancel)
    await asyncio.sleep(0)
    assert not step.done(), "the step must wait for the switch"
    may_end.set()
    with pytest.raises(asyncio.CancelledError):
        await step
    assert done == ["switched"]


async def test_a_switch_that_fails_raises_its_error_and_one_that_ends_returns() -> None:
    async def fails() -> None:
        raise RuntimeError("rolled back")

    async def ends() -> int:
        return 7

    with pytest.raises(RuntimeError, match="rolled back"):
        await finish_even_if_cancelled(fails())
    assert await finish_even_if_cancelled(ends()) == 7
