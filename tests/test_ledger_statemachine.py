"""Property test of the task state machine: random actions by random senders are accepted exactly
when a small independent model allows them, and a task never moves backwards."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from ledger_helpers import Clock, World

from dtxfast.errors import StateError, Unauthorized
from dtxfast.ledger import (
    ConfirmTask,
    FailTask,
    FinishTask,
    MemoryLedger,
    ProcessTask,
    RejectTask,
    StartTask,
)

ORDER = {"Confirming": 0, "Ready": 1, "ToProcess": 2, "Processing": 3,
         "Finished": 4, "Failed": 4, "Rejected": 4}
ACTIONS = ["confirm", "reject", "start", "process", "finish", "fail"]
SENDERS = ["ex1", "ex2", "req", "req2", "s0"]


def model_step(status: str, confirmed: set[str], action: str, sender: str,
               executors: set[str], requester: str) -> tuple[type[Exception] | None, str, set[str]]:
    """Expected (error, new status, confirmed) of one action, written from the issue's rules."""
    is_exec, is_req = sender in executors, sender == requester
    if action in ("confirm", "reject", "process", "finish") and not is_exec:
        return Unauthorized, status, confirmed
    if action == "start" and not is_req:
        return Unauthorized, status, confirmed
    if action == "fail" and not (is_exec or is_req):
        return Unauthorized, status, confirmed
    if action == "confirm":
        if status != "Confirming" or sender in confirmed:
            return StateError, status, confirmed
        now = confirmed | {sender}
        return None, "Ready" if now == executors else status, now
    allowed = {"reject": ({"Confirming"}, "Rejected"), "start": ({"Ready"}, "ToProcess"),
               "process": ({"ToProcess"}, "Processing"), "finish": ({"Processing"}, "Finished"),
               "fail": ({"ToProcess", "Processing"}, "Failed")}
    sources, target = allowed[action]
    if status not in sources:
        return StateError, status, confirmed
    return None, target, confirmed


class TaskMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        clock = Clock()
        self.world = World(MemoryLedger(clock=clock), clock)
        self.task = self.world.two_party_task()[0]
        w = self.world
        self.who = {"ex1": w.ex1, "ex2": w.ex2, "req": w.req, "req2": w.req2, "s0": w.s[0]}
        self.executors = {"ex1", "ex2"}
        self.status, self.confirmed = "Confirming", set()
        self.rank = 0

    @rule(pick=st.integers(0, 1))
    def advance(self, pick: int) -> None:
        """The next step along the happy path, so that every status is reached often."""
        todo = sorted(self.executors - self.confirmed)
        step = {"Confirming": ("confirm", todo[pick % len(todo)] if todo else "ex1"),
                "Ready": ("start", "req"), "ToProcess": ("process", ["ex1", "ex2"][pick]),
                "Processing": ("finish", ["ex1", "ex2"][pick])}.get(self.status)
        if step is not None:
            self.act(*step)

    @rule(action=st.sampled_from(ACTIONS), sender=st.sampled_from(SENDERS))
    def act(self, action: str, sender: str) -> None:
        body = {"confirm": ConfirmTask, "reject": RejectTask, "start": StartTask,
                "process": ProcessTask, "finish": FinishTask, "fail": FailTask}[action](
                    task_id=self.task)
        err, status, confirmed = model_step(self.status, self.confirmed, action, sender,
                                            self.executors, "req")
        if err is None:
            self.world.submit(self.who[sender], body)
        else:
            with pytest.raises(err):
                self.world.submit(self.who[sender], body)
        self.status, self.confirmed = status, confirmed

    @invariant()
    def matches_model_and_never_goes_back(self) -> None:
        t = self.world.led.get_task(self.task)
        assert t.status == self.status
        assert set(t.confirmed) == {self.who[n].node_id for n in self.confirmed}
        assert ORDER[t.status] >= self.rank
        self.rank = ORDER[t.status]


TaskMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)
test_task_state_machine = TaskMachine.TestCase
