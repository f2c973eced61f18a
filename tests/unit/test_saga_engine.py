"""The generic saga engine, with fake steps and an in-memory log."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import Crash, CrashingLog, MemoryLog
from oms.resilience.clock import FakeClock
from oms.saga.engine import (
    LogEntry,
    Logged,
    Outcome,
    Position,
    SagaDefinition,
    SagaEnd,
    SagaEngine,
    SagaStatus,
    Step,
    StepResult,
    replay,
)
from oms.saga.policies import CompensationPolicy


class World:
    """Effects the steps have in place, so a test can see what was done and undone."""

    def __init__(self, outcomes: dict[str, Outcome], undo_failures: dict[str, int] | None = None) -> None:
        self.outcomes = outcomes
        self.undo_failures = dict(undo_failures or {})
        self.effects: set[str] = set()
        self.undo_calls: list[str] = []

    def step(self, name: str, *, repeatable: bool = False) -> Step[dict[str, Any]]:
        """``repeatable``: a DONE row may wait for the next write (running the step again adds
        nothing: ``effects`` is a set)."""

        async def action(ctx: dict[str, Any]) -> StepResult:
            outcome = self.outcomes.get(name, Outcome.DONE)
            if outcome in (Outcome.DONE, Outcome.UNCERTAIN, Outcome.UNKNOWN):
                self.effects.add(name)  # an uncertain or unknown step may well have acted
            ctx.setdefault("ran", []).append(name)
            reason = None if outcome is Outcome.DONE else f"{name}_{outcome.value}"
            return StepResult(outcome, reason, {name: True}, repeatable=repeatable and outcome is Outcome.DONE)

        async def undo(ctx: dict[str, Any]) -> StepResult:
            self.undo_calls.append(name)
            if self.undo_failures.get(name, 0) > 0:
                self.undo_failures[name] -= 1
                return StepResult.failed("downstream_down")
            self.effects.discard(name)
            return StepResult.done()

        return Step(name, action, undo)


def engine(log: MemoryLog, clock: FakeClock | None = None, **policy: Any) -> tuple[SagaEngine, list[float]]:
    sleeps: list[float] = []
    clock = clock or FakeClock()

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)

    return SagaEngine(log, clock=clock, sleep=sleep, compensation=CompensationPolicy(**policy)), sleeps


def run(world: World, names: list[str] | None = None, **policy: Any) -> tuple[Any, MemoryLog, list[float]]:
    names = names or ["a", "b", "c"]
    definition = SagaDefinition("test", tuple(world.step(n) for n in names))
    log = MemoryLog()
    saga_engine, sleeps = engine(log, **policy)
    result = asyncio.run(saga_engine.run(definition, "saga-1", {}))
    return result, log, sleeps


def test_all_steps_done_completes_and_logs_each_step() -> None:
    world = World({})
    result, log, _ = run(world)
    assert result.status is SagaStatus.COMPLETED
    assert log.names() == [("step", "a", "done"), ("step", "b", "done"), ("step", "c", "done")]
    assert log.ends == [SagaEnd(SagaStatus.COMPLETED)]
    assert world.effects == {"a", "b", "c"}
    assert log.writes == 3  # the end travels with the last step's row


def test_first_step_failing_compensates_nothing() -> None:
    world = World({"a": Outcome.FAILED})
    result, log, _ = run(world)
    assert result == type(result)(SagaStatus.COMPENSATED, "a", "a_failed")
    assert log.names() == [("step", "a", "failed")]
    assert log.ends == [SagaEnd(SagaStatus.COMPENSATED, "a", "a_failed")]
    assert world.undo_calls == []


def test_middle_step_failing_undoes_the_earlier_one() -> None:
    world = World({"b": Outcome.FAILED})
    result, log, _ = run(world)
    assert result.status is SagaStatus.COMPENSATED
    assert log.names() == [("step", "a", "done"), ("step", "b", "failed"), ("compensation", "undo_a", "done")]
    assert world.effects == set()
    assert world.undo_calls == ["a"]


def test_last_step_failing_undoes_newest_first() -> None:
    world = World({"c": Outcome.FAILED})
    _, log, _ = run(world)
    assert [n for k, n, _ in log.names() if k == "compensation"] == ["undo_b", "undo_a"]
    assert world.effects == set()


def test_uncertain_step_is_undone_too() -> None:
    world = World({"b": Outcome.UNCERTAIN})
    result, _, _ = run(world)
    assert result.status is SagaStatus.COMPENSATED
    assert world.undo_calls == ["b", "a"]
    assert world.effects == set()


def test_unknown_outcome_stops_without_compensating() -> None:
    world = World({"b": Outcome.UNKNOWN})
    result, log, _ = run(world)
    assert result.status is SagaStatus.WAITING
    assert log.ends == [SagaEnd(SagaStatus.WAITING, "b", "b_unknown")]
    assert world.undo_calls == []
    assert "c" not in world.effects


def test_skipped_step_is_logged_and_not_undone() -> None:
    world = World({"b": Outcome.SKIPPED, "c": Outcome.FAILED})
    _, log, _ = run(world)
    assert ("step", "b", "skipped") in log.names()
    assert world.undo_calls == ["a"]


def test_failing_compensation_is_retried_with_backoff_until_it_succeeds() -> None:
    world = World({"c": Outcome.FAILED}, undo_failures={"b": 5})
    result, log, sleeps = run(world, wait_initial=0.1, wait_max=1.0, jitter=0.0)
    assert result.status is SagaStatus.COMPENSATED
    assert world.effects == set()
    assert world.undo_calls == ["b"] * 6 + ["a"]
    assert sleeps == [0.1, 0.2, 0.4, 0.8, 1.0]
    # Attempts 1, 2 and 4 are logged as failures, then the success (attempt 6), then undo_a.
    compensations = [(e.name, e.outcome, e.attempt) for e in log.entries if e.kind == "compensation"]
    assert compensations == [
        ("undo_b", "failed", 1),
        ("undo_b", "failed", 2),
        ("undo_b", "failed", 4),
        ("undo_b", "done", 6),
        ("undo_a", "done", 1),
    ]
    assert log.ends == [SagaEnd(SagaStatus.COMPENSATED, "c", "c_failed")]


def test_compensation_gives_up_after_the_deadline_when_one_is_set() -> None:
    world = World({"b": Outcome.FAILED}, undo_failures={"a": 100})
    result, log, _ = run(world, wait_initial=1.0, wait_max=1.0, jitter=0.0, give_up_after=5.0)
    assert result.status is SagaStatus.COMPENSATION_FAILED
    assert result.failed_step == "undo_a"
    assert "a" in world.effects
    assert log.ends[-1].status is SagaStatus.COMPENSATION_FAILED
    assert log.entries[-1].attempt == 6


def test_a_raising_step_is_unknown_not_a_guess() -> None:
    async def boom(ctx: dict[str, Any]) -> StepResult:
        raise RuntimeError("bug")

    world = World({})
    definition = SagaDefinition("t", (world.step("a"), Step("b", boom)))
    log = MemoryLog()
    saga_engine, _ = engine(log)
    result = asyncio.run(saga_engine.run(definition, "s", {}))
    assert result.status is SagaStatus.WAITING
    assert result.reason == "error:RuntimeError"
    assert world.undo_calls == []


def test_context_carries_data_between_steps_and_resume_skips_done_steps() -> None:
    world = World({})
    definition = SagaDefinition("t", tuple(world.step(n) for n in "abc"))
    log = MemoryLog()
    saga_engine, _ = engine(log)
    context: dict[str, Any] = {}
    asyncio.run(saga_engine.run(definition, "s", context, done=["a"], start=1))
    assert context["ran"] == ["b", "c"]
    assert context["b"] is True and context["c"] is True


def test_log_times_are_utc_and_durations_come_from_the_clock() -> None:
    clock = FakeClock()

    async def slow(ctx: dict[str, Any]) -> StepResult:
        clock.advance(0.25)
        return StepResult.done()

    log = MemoryLog()
    saga_engine, _ = engine(log, clock)
    asyncio.run(saga_engine.run(SagaDefinition("t", (Step("a", slow),)), "s", {}))
    entry = log.entries[0]
    assert entry.duration_ms == 250.0
    offset = entry.started_at.utcoffset()
    assert offset is not None and offset.total_seconds() == 0


OUTCOMES = st.sampled_from([Outcome.DONE, Outcome.SKIPPED, Outcome.FAILED, Outcome.UNCERTAIN, Outcome.UNKNOWN])


@settings(max_examples=200, deadline=None)
@given(
    outcomes=st.lists(OUTCOMES, min_size=1, max_size=6),
    undo_failures=st.lists(st.integers(0, 4), min_size=6, max_size=6),
)
def test_any_run_ends_all_done_all_undone_or_waiting(outcomes: list[Outcome], undo_failures: list[int]) -> None:
    names = [f"s{i}" for i in range(len(outcomes))]
    world = World(dict(zip(names, outcomes, strict=True)), dict(zip(names, undo_failures, strict=False)))
    result, log, _ = run(world, names, jitter=0.0)
    assert len(log.ends) == 1
    if result.status is SagaStatus.COMPLETED:
        assert world.effects == {n for n, o in zip(names, outcomes, strict=True) if o is Outcome.DONE}
    elif result.status is SagaStatus.COMPENSATED:
        assert world.effects == set()
    else:
        assert result.status is SagaStatus.WAITING
        assert world.undo_calls == []
    # Every row in the log names a step of the saga, in the order they ran.
    assert all(e.name in names or e.name.removeprefix("undo_") in names for e in log.entries)


# -- recovery: the log replays to where the saga stands --------------------------------------------


def logged(log: MemoryLog) -> list[Logged]:
    return [Logged(e.kind, e.name, e.outcome, e.reason) for e in log.entries]


def test_replay_of_an_empty_log_starts_at_the_first_step() -> None:
    definition = SagaDefinition("t", tuple(World({}).step(n) for n in "abc"))
    assert replay(definition, []) == Position(False, [], 0)


def test_replay_forward_after_two_steps() -> None:
    definition = SagaDefinition("t", tuple(World({}).step(n) for n in "abc"))
    rows = [Logged("step", "a", "done"), Logged("step", "b", "skipped")]
    assert replay(definition, rows) == Position(False, ["a"], 2)


def test_replay_of_an_unknown_step_asks_it_again() -> None:
    definition = SagaDefinition("t", tuple(World({}).step(n) for n in "abc"))
    rows = [Logged("step", "a", "done"), Logged("step", "b", "unknown", "b_unknown")]
    assert replay(definition, rows) == Position(False, ["a"], 1)


def test_replay_mid_compensation_owes_what_is_not_undone() -> None:
    definition = SagaDefinition("t", tuple(World({}).step(n) for n in "abcd"))
    rows = [
        Logged("step", "a", "done"),
        Logged("step", "b", "done"),
        Logged("step", "c", "uncertain", "c_lost"),
        Logged("compensation", "undo_c", "done"),
        Logged("compensation", "undo_b", "failed", "down"),
    ]
    assert replay(definition, rows) == Position(True, ["a", "b"], 0, "c", "c_lost")


def test_resume_uses_the_steps_recover_for_the_step_that_may_have_acted() -> None:
    calls: list[str] = []

    async def act(ctx: dict[str, Any]) -> StepResult:
        calls.append("act")
        return StepResult.done()

    async def recover(ctx: dict[str, Any]) -> StepResult:
        calls.append("recover")
        return StepResult.done()

    definition = SagaDefinition("t", (Step("a", act), Step("b", act, recover=recover), Step("c", act)))
    log = MemoryLog()
    saga_engine, _ = engine(log)
    result = asyncio.run(saga_engine.resume(definition, "s", {}, [Logged("step", "a", "done")]))
    assert result.status is SagaStatus.COMPLETED
    assert calls == ["recover", "act"]


@settings(max_examples=300, deadline=None)
@given(
    outcomes=st.lists(OUTCOMES, min_size=1, max_size=5),
    undo_failures=st.lists(st.integers(0, 3), min_size=5, max_size=5),
    crashes=st.lists(st.integers(0, 12), min_size=0, max_size=3),
    repeatable=st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_any_crash_points_replay_to_all_done_or_all_undone(
    outcomes: list[Outcome], undo_failures: list[int], crashes: list[int], repeatable: list[bool]
) -> None:
    """For any step outcomes, any steps whose rows wait for the next write, and any points where
    the process dies, driving the saga on from its log until it ends leaves its effects all done,
    all undone, or (an unknown outcome) waiting."""
    names = [f"s{i}" for i in range(len(outcomes))]
    world = World(dict(zip(names, outcomes, strict=True)), dict(zip(names, undo_failures, strict=False)))
    definition = SagaDefinition(
        "t", tuple(world.step(n, repeatable=r) for n, r in zip(names, repeatable, strict=False))
    )
    durable: list[LogEntry] = []
    ends: list[SagaEnd] = []
    result = None
    for attempt in range(len(crashes) + 1):
        log = CrashingLog(crashes[attempt] if attempt < len(crashes) else None)
        log.entries = list(durable)
        log.writes = 0
        saga_engine, _ = engine(log, jitter=0.0)
        try:
            if attempt == 0:
                result = asyncio.run(saga_engine.run(definition, "s", {}))
            else:
                result = asyncio.run(saga_engine.resume(definition, "s", {}, logged(log)))
        except Crash:
            durable = list(log.entries)
            continue
        ends = log.ends
        break
    assert result is not None and len(ends) == 1
    if result.status is SagaStatus.COMPLETED:
        assert world.effects == {n for n, o in zip(names, outcomes, strict=True) if o is Outcome.DONE}
    elif result.status is SagaStatus.COMPENSATED:
        assert world.effects == set()
    else:
        assert result.status is SagaStatus.WAITING
        failed_before = [o for o in outcomes[: names.index(result.failed_step or "")]]
        assert Outcome.FAILED not in failed_before and Outcome.UNCERTAIN not in failed_before


def test_a_repeatable_step_is_written_with_the_next_one() -> None:
    asked: list[str] = []

    async def look(ctx: dict[str, Any]) -> StepResult:
        asked.append("look")
        return StepResult.done(repeatable=True)

    world = World({})
    definition = SagaDefinition("t", (Step("look", look), world.step("act")))
    log = MemoryLog()
    saga_engine, _ = engine(log)
    asyncio.run(saga_engine.run(definition, "s", {}))
    assert log.names() == [("step", "look", "done"), ("step", "act", "done")]
    assert log.writes == 1
    # A crash before that write loses the look's row: recovery simply looks again.
    assert replay(definition, []) == Position(False, [], 0)
    asyncio.run(saga_engine.resume(definition, "s2", {}, []))
    assert asked == ["look", "look"]
