"""A generic saga engine: steps run in order; when one fails, the steps already done are undone by
their compensations, newest first. Every step and every compensation attempt is written to a
durable log through the ``SagaLog`` port, together with the saga's end when there is one, so the
log and the saga's status never disagree.

The engine knows nothing of HTTP, orders or databases: steps are coroutines, the log is a port, and
time comes from an injected monotonic clock, wall clock and sleep.

How a step's outcome steers the saga::

    DONE       the effect happened            -> next step (saga COMPLETED after the last)
    SKIPPED    nothing to do                  -> next step
    FAILED     refused; no effect happened    -> undo earlier steps -> COMPENSATED
    UNCERTAIN  may have happened; undoable    -> undo this step and earlier ones -> COMPENSATED
    UNKNOWN    cannot be learnt nor undone    -> stop; the saga WAITS for recovery

A compensation is retried with capped exponential backoff until it succeeds: no saga ends failed
while an effect of it is still in place. With ``CompensationPolicy.give_up_after`` set, the saga ends
COMPENSATION_FAILED instead once that time has passed, with every attempt counted in the log.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, Literal, Protocol, TypeVar

from oms.resilience.clock import Clock, SystemClock
from oms.saga.policies import CompensationPolicy


class Outcome(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    UNKNOWN = "unknown"


class SagaStatus(StrEnum):
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    WAITING = "waiting"
    COMPENSATION_FAILED = "compensation_failed"


@dataclass(frozen=True)
class StepResult:
    outcome: Outcome
    reason: str | None = None
    """A short code saying why a step failed or was skipped."""
    data: Mapping[str, Any] = field(default_factory=dict)
    """Merged into the saga's context for the steps after this one."""
    detail: Mapping[str, Any] = field(default_factory=dict)
    """What the step asked and was answered, for the log."""
    repeatable: bool = False
    """Running the step again changes nothing more (it only read, or its effect is keyed by the
    saga and idempotent): its row may wait for the next write of the saga, since a crash before
    then only means running it again. A row that ends the saga or starts compensations is never
    held back."""

    @classmethod
    def done(
        cls,
        *,
        data: Mapping[str, Any] | None = None,
        detail: Mapping[str, Any] | None = None,
        reason: str | None = None,
        repeatable: bool = False,
    ) -> StepResult:
        return cls(Outcome.DONE, reason, data or {}, detail or {}, repeatable)

    @classmethod
    def skipped(cls, reason: str, *, detail: Mapping[str, Any] | None = None) -> StepResult:
        return cls(Outcome.SKIPPED, reason, {}, detail or {})

    @classmethod
    def failed(
        cls, reason: str, *, data: Mapping[str, Any] | None = None, detail: Mapping[str, Any] | None = None
    ) -> StepResult:
        return cls(Outcome.FAILED, reason, data or {}, detail or {})

    @classmethod
    def uncertain(cls, reason: str, *, detail: Mapping[str, Any] | None = None) -> StepResult:
        return cls(Outcome.UNCERTAIN, reason, {}, detail or {})

    @classmethod
    def unknown(cls, reason: str, *, detail: Mapping[str, Any] | None = None) -> StepResult:
        return cls(Outcome.UNKNOWN, reason, {}, detail or {})


C = TypeVar("C", bound=Mapping[str, Any])
"""A saga's context: what its steps read, and what their results' ``data`` are merged into. A dict at
run time; each saga types its own with a TypedDict (``oms.orders.saga.OrderContext``)."""

Action = Callable[[C], Awaitable[StepResult]]


@dataclass(frozen=True)
class Step(Generic[C]):
    name: str
    action: Action[C]
    compensation: Action[C] | None = None
    """Undoes the action; must be idempotent, since it is retried until it succeeds."""
    compensation_name: str = ""
    """Name in the log; defaults to ``undo_<name>``."""
    recover: Action[C] | None = None
    """Runs instead of the action when the step may have acted already (a crash, an UNKNOWN
    outcome): learns the outcome first where asking is needed. None runs the action again, which
    must then be idempotent."""

    @property
    def undo_name(self) -> str:
        return self.compensation_name or f"undo_{self.name}"


@dataclass(frozen=True)
class SagaDefinition(Generic[C]):
    name: str
    steps: tuple[Step[C], ...]
    given: tuple[Step[C], ...] = ()
    """Effects an earlier saga left in place that this one builds on: never run, but undone by
    their compensations when this saga fails (a payment taken before a deferred reservation)."""

    def step(self, name: str) -> Step[C]:
        for step in (*self.given, *self.steps):
            if step.name == name:
                return step
        raise KeyError(name)


Kind = Literal["step", "compensation"]
"""What a log row records: a step's run, or an attempt at its compensation."""


@dataclass(frozen=True)
class LogEntry:
    kind: Kind
    """``step`` or ``compensation``."""
    name: str
    outcome: str
    reason: str | None
    detail: Mapping[str, Any]
    started_at: datetime
    ended_at: datetime
    duration_ms: float
    attempt: int = 1


@dataclass(frozen=True)
class Logged:
    """What recovery reads back of a log row."""

    kind: str
    name: str
    outcome: str
    reason: str | None = None


@dataclass(frozen=True)
class Position:
    """Where a saga stands, replayed from its log."""

    compensating: bool
    owed: list[str]
    """Forward: the steps done so far. Compensating: the done steps not yet undone, oldest first."""
    next_step: int = 0
    failed_step: str | None = None
    reason: str | None = None


def replay(definition: SagaDefinition[Any], logged: Sequence[Logged]) -> Position:
    """Read a saga's log back into the point to drive it on from (a pure function)."""
    index = {step.name: i for i, step in enumerate(definition.steps)}
    undo = {step.undo_name: step.name for step in (*definition.given, *definition.steps)}
    done: list[str] = [step.name for step in definition.given]
    undone: set[str] = set()
    next_step = 0
    failed: Logged | None = None
    for row in logged:
        if row.kind == "compensation":
            if row.outcome in (Outcome.DONE, Outcome.SKIPPED) and row.name in undo:
                undone.add(undo[row.name])
            continue
        if row.name not in index:
            continue
        if row.outcome == Outcome.UNKNOWN:
            next_step = index[row.name]  # asked again, through the step's recover
            continue
        next_step = index[row.name] + 1
        if row.outcome in (Outcome.DONE, Outcome.UNCERTAIN) and row.name not in done:
            done.append(row.name)
        if row.outcome in (Outcome.FAILED, Outcome.UNCERTAIN):
            failed = row
    if failed is not None:
        return Position(True, [name for name in done if name not in undone], 0, failed.name, failed.reason)
    return Position(False, done, next_step)


@dataclass(frozen=True)
class SagaEnd:
    """How a saga ended (or stopped, WAITING): what ``run`` and ``resume`` return, and what the log
    writes with the saga's last row."""

    status: SagaStatus
    failed_step: str | None = None
    reason: str | None = None


C_contra = TypeVar("C_contra", bound=Mapping[str, Any], contravariant=True)


class SagaLog(Protocol[C_contra]):
    """Where the engine writes each saga's rows and end. Generic in the context it is handed, so a
    log that reads its sagas' contexts types them (``oms.orders.saga_log.OrderLog``: ``OrderContext``)."""

    async def record(
        self,
        saga_id: str,
        entry: LogEntry | None,
        context: C_contra,
        end: SagaEnd | None,
        *,
        earlier: Sequence[LogEntry] = (),
    ) -> None:
        """Write ``earlier`` rows, ``entry`` (and ``end`` when the saga ends) in one transaction."""


class StepObserver(Protocol):
    """Watches each step and each compensation attempt (tracing, in OrderService): ``watch`` is entered
    before the action runs and left after it, and what it yields is told the action's result. The
    engine knows nothing more of it; without one, it does nothing of the kind."""

    def watch(
        self, saga: str, saga_id: str, kind: str, name: str, attempt: int
    ) -> AbstractContextManager[Callable[[StepResult], None]]: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _logged_attempt(attempt: int) -> bool:
    # Attempts 1, 2, 4, 8, ...: a compensation failing for hours leaves a few dozen rows, not thousands.
    return attempt & (attempt - 1) == 0


class SagaEngine:
    def __init__(
        self,
        log: SagaLog[Any],
        *,
        clock: Clock | None = None,
        now: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        compensation: CompensationPolicy | None = None,
        rng: random.Random | None = None,
        observer: StepObserver | None = None,
    ) -> None:
        self._log = log
        self._observer = observer
        self._clock = clock or SystemClock()
        self._now = now
        self._sleep = sleep
        self._policy = compensation or CompensationPolicy()
        self._rng = rng or random.Random()

    async def run(
        self,
        definition: SagaDefinition[C],
        saga_id: str,
        context: C,
        *,
        done: Sequence[str] | None = None,
        start: int = 0,
        recovering: bool = False,
    ) -> SagaEnd:
        """Run the steps from ``start``; ``done`` names the steps already done (when resuming).

        ``recovering``: the steps from ``start`` on may have acted already (their rows can be
        held back, see ``StepResult.repeatable``), so each runs its ``recover``."""
        completed = [step.name for step in definition.given] if done is None else list(done)
        steps = definition.steps
        held: list[LogEntry] = []  # rows of repeatable steps, written with the next row

        async def record(entry: LogEntry | None, end: SagaEnd | None) -> None:
            if held:
                await self._log.record(saga_id, entry, context, end, earlier=tuple(held))
                held.clear()
            else:
                await self._log.record(saga_id, entry, context, end)

        for index in range(start, len(steps)):
            step = steps[index]
            action = step.recover if recovering and step.recover else step.action
            result, entry = await self._attempt(definition.name, saga_id, "step", step.name, action, context, 1)
            _merge(context, result.data)
            if result.outcome in (Outcome.DONE, Outcome.SKIPPED):
                if result.outcome is Outcome.DONE:
                    completed.append(step.name)
                last = index == len(steps) - 1
                if result.repeatable and not last:
                    held.append(entry)
                    continue
                await record(entry, SagaEnd(SagaStatus.COMPLETED) if last else None)
                continue
            if result.outcome is Outcome.UNKNOWN:
                end = SagaEnd(SagaStatus.WAITING, step.name, result.reason)
                await record(entry, end)
                return end
            await record(entry, None)
            if result.outcome is Outcome.UNCERTAIN:
                completed.append(step.name)
            return await self.compensate(
                definition, saga_id, context, completed, failed_step=step.name, reason=result.reason
            )
        end = SagaEnd(SagaStatus.COMPLETED)
        if start >= len(steps):
            await self._log.record(saga_id, None, context, end)
        return end

    async def resume(
        self, definition: SagaDefinition[C], saga_id: str, context: C, logged: Sequence[Logged]
    ) -> SagaEnd:
        """Drive on a saga from what its log says: after a crash, an UNKNOWN outcome, or a
        compensation that gave up. Forward from the first step without a known outcome (its
        ``recover`` learns whether it acted), or backwards through the compensations still owed."""
        position = replay(definition, logged)
        if position.compensating:
            return await self.compensate(
                definition, saga_id, context, position.owed, failed_step=position.failed_step, reason=position.reason
            )
        return await self.run(
            definition, saga_id, context, done=position.owed, start=position.next_step, recovering=True
        )

    async def compensate(
        self,
        definition: SagaDefinition[C],
        saga_id: str,
        context: C,
        completed: Sequence[str],
        *,
        failed_step: str | None,
        reason: str | None,
    ) -> SagaEnd:
        """Undo ``completed`` steps, newest first, each until it succeeds; then end the saga."""
        began = self._clock.monotonic()
        pending = [definition.step(name) for name in reversed(completed)]
        pending = [step for step in pending if step.compensation is not None]
        for position, step in enumerate(pending):
            last = position == len(pending) - 1
            given_up = await self._compensate_step(
                definition.name, saga_id, step, context, began, failed_step, reason, last
            )
            if given_up is not None:
                return given_up
        end = SagaEnd(SagaStatus.COMPENSATED, failed_step, reason)
        if not pending:
            await self._log.record(saga_id, None, context, end)
        return end

    async def _compensate_step(
        self,
        saga: str,
        saga_id: str,
        step: Step[C],
        context: C,
        began: float,
        failed_step: str | None,
        reason: str | None,
        last: bool,
    ) -> SagaEnd | None:
        assert step.compensation is not None
        attempt = 0
        wait = self._policy.wait_initial
        while True:
            attempt += 1
            result, entry = await self._attempt(
                saga, saga_id, "compensation", step.undo_name, step.compensation, context, attempt
            )
            _merge(context, result.data)
            if result.outcome in (Outcome.DONE, Outcome.SKIPPED):
                end = SagaEnd(SagaStatus.COMPENSATED, failed_step, reason) if last else None
                # A compensation with nothing to undo is not worth a row, only the end it may carry.
                logged = entry if result.outcome is Outcome.DONE else None
                if logged is not None or end is not None:
                    await self._log.record(saga_id, logged, context, end)
                return None
            limit = self._policy.give_up_after
            if limit is not None and self._clock.monotonic() - began >= limit:
                end = SagaEnd(SagaStatus.COMPENSATION_FAILED, step.undo_name, result.reason)
                await self._log.record(saga_id, entry, context, end)
                return end
            if _logged_attempt(attempt):
                await self._log.record(saga_id, entry, context, None)
            await self._sleep(wait * (1 + self._rng.random() * self._policy.jitter))
            wait = min(wait * 2, self._policy.wait_max)

    async def _attempt(
        self, saga: str, saga_id: str, kind: Kind, name: str, action: Action[C], context: C, attempt: int
    ) -> tuple[StepResult, LogEntry]:
        started_at = self._now()
        began = self._clock.monotonic()
        if self._observer is not None:
            with self._observer.watch(saga, saga_id, kind, name, attempt) as seen:
                result = await _act(action, context)
                seen(result)
        else:
            try:
                result = await action(context)
            except Exception as exc:
                result = _error(exc)
        duration_ms = (self._clock.monotonic() - began) * 1000.0
        entry = LogEntry(
            kind=kind,
            name=name,
            outcome=result.outcome.value,
            reason=result.reason,
            detail=dict(result.detail),
            started_at=started_at,
            ended_at=self._now(),
            duration_ms=round(duration_ms, 3),
            attempt=attempt,
        )
        return result, entry


def _error(exc: Exception) -> StepResult:
    # A bug or an unforeseen error: stop where we are, never guess.
    return StepResult.unknown(f"error:{type(exc).__name__}", detail={"error": str(exc)[:500]})


async def _act(action: Action[C], context: C) -> StepResult:
    try:
        return await action(context)
    except Exception as exc:
        return _error(exc)


_merge: Callable[[Mapping[str, Any], Mapping[str, Any]], None] = dict.update
"""What a step learnt, added to its saga's context for the steps after it: a context is a dict at run
time (its TypedDict names the keys a step may add), and dict.update costs no more than before."""
