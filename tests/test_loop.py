"""The worker loop's decisions, driven with no store, no invoker and no processes.

:class:`InvocationState` is the sans-I/O core of an invocation: these tests hand it sub-DAGs
made by hand, tell it what happened (a task finished, a flush was delivered and completed some
fan-ins) and check what it decides: which task runs next, what is marked and uploaded, what is
handed off, which partition the worker becomes and which it invokes, when to flush, and when a
value is let go.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from daskless.worker_runtime.events import TasksFinished
from daskless.worker_runtime.loop import InvocationState
from daskless.worker_runtime.protocol import RunOptions, SubDAG, Successor, TaskInfo
from daskless.worker_runtime.store.base import Mark


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def task(id: int, partition: int, deps: Iterable[int] = (), successors: Iterable[Successor] = (),
         local: bool = True, wanted: bool = False) -> TaskInfo:
    deps = tuple(deps)
    return TaskInfo(id, f"t{id}", None, deps, tuple(f"t{d}" for d in deps), (),
                    tuple(successors), partition, local, wanted)


def spec(partition: int, *tasks: TaskInfo, interval_s: float = 0.02) -> SubDAG:
    options = RunOptions(event_interval_s=interval_s)
    return SubDAG("run", partition, {t.id: t for t in tasks}, options)


def run_all(state: InvocationState) -> list[int]:
    """Run every ready task (each returns its id times ten); the ids in the order run."""
    order = []
    while (info := state.next_task()) is not None:
        _inputs, absent = state.take_inputs(info)
        assert not absent, f"task {info.id} lacks {absent}"
        state.finished(info, info.id * 10)
        order.append(info.id)
    return order


def test_a_local_chain_runs_in_memory_with_nothing_to_deliver_but_its_result() -> None:
    chain = spec(0,
                 task(0, 0, successors=[Successor(1, 0, 1, True)]),
                 task(1, 0, deps=[0], successors=[Successor(2, 0, 1, True)]),
                 task(2, 0, deps=[1], wanted=True))
    state = InvocationState(chain, "w")
    assert state.enter(0, [0]) == []
    assert run_all(state) == [0, 1, 2]
    flush = state.take_flush()
    assert flush.marks == [] and flush.handoffs == {} and flush.outputs == [2]
    assert flush.events == [TasksFinished("w", (0, 1, 2))] and flush.final
    assert set(state.held) == {2}  # inputs were released as soon as their consumer ran
    dispatch = state.delivered(flush, [])
    assert dispatch.become is None and dispatch.invoke == [] and state.held == {}


def test_a_cross_partition_edge_is_marked_with_its_output_and_the_owner_continues() -> None:
    s = Successor(5, 1, 2, False)  # needs an input from each partition
    state = InvocationState(spec(0, task(0, 0, successors=[s])), "w")
    state.enter(0, [0])
    run_all(state)
    flush = state.take_flush()
    assert flush.marks == [Mark(5, 0, 2)] and flush.outputs == [0]
    # The other input is not there yet: nothing to do but end.
    dispatch = state.delivered(flush, completed=[])
    assert dispatch.become is None and dispatch.invoke == []
    assert state.held == {}  # uploaded and marked: nobody here needs it any more


def test_a_fan_in_this_delivery_completed_is_dispatched_in_the_same_flush() -> None:
    """No extra round trip: the successor goes to this flush's dispatch, nothing stays."""
    s = Successor(5, 1, 2, False)
    state = InvocationState(spec(0, task(0, 0, successors=[s])), "w")
    state.enter(0, [0])
    run_all(state)
    flush = state.take_flush()
    dispatch = state.delivered(flush, completed=[5])
    assert dispatch.become == (1, (5,)) and dispatch.invoke == []
    assert not state.outbox.pending()


def test_when_this_worker_made_every_input_there_is_no_mark() -> None:
    s = Successor(5, 1, 2, False)
    state = InvocationState(spec(0, task(0, 0, successors=[s]), task(1, 0, successors=[s])), "w")
    state.enter(0, [0, 1])
    run_all(state)
    flush = state.take_flush()
    assert flush.marks == [] and sorted(flush.outputs) == [0, 1]
    assert flush.handoffs == {1: [5]}
    assert state.delivered(flush, []).become == (1, (5,))


def test_it_becomes_one_group_and_invokes_a_worker_for_each_other() -> None:
    successors = [Successor(10 + p, p, 1, False) for p in (1, 2, 3)]
    state = InvocationState(spec(0, task(0, 0, successors=successors)), "w")
    state.enter(0, [0])
    run_all(state)
    dispatch = state.delivered(state.take_flush(), [])
    assert dispatch.become == (1, (11,))
    assert dispatch.invoke == [(2, (12,)), (3, (13,))]


def test_it_becomes_only_a_group_planned_at_its_own_size() -> None:
    successors = [Successor(10 + p, p, 1, False) for p in (1, 2, 3)]
    options = RunOptions(sizes_mb=(512, 3538, 512, 1024))
    sized = SubDAG("run", 0, {0: task(0, 0, successors=successors)}, options)
    state = InvocationState(sized, "w")
    state.enter(0, [0])
    run_all(state)
    dispatch = state.delivered(state.take_flush(), [])
    assert dispatch.become == (2, (12,))  # the 512 MB one, like this worker
    assert dispatch.invoke == [(1, (11,)), (3, (13,))]


def test_with_no_group_of_its_size_it_becomes_none() -> None:
    successors = [Successor(11, 1, 1, False)]
    options = RunOptions(sizes_mb=(512, 1024))
    state = InvocationState(SubDAG("run", 0, {0: task(0, 0, successors=successors)}, options),
                            "w")
    state.enter(0, [0])
    run_all(state)
    dispatch = state.delivered(state.take_flush(), [])
    assert dispatch.become is None and dispatch.invoke == [(1, (11,))]


def test_with_local_work_left_a_flush_invokes_every_group_and_stays() -> None:
    clock = Clock()
    first = task(0, 0, successors=[Successor(10, 1, 1, False)])
    state = InvocationState(spec(0, first, task(1, 0)), "w", clock)
    state.enter(0, [1, 0])
    info = state.next_task()
    assert info is not None and info.id == 1  # entries run in the order given
    state.finished(info, 1)
    info = state.next_task()
    assert info is not None
    state.finished(info, 0)
    state.ready.append(1)  # pretend more local work arrived before the flush
    flush = state.take_flush()
    assert not flush.final
    dispatch = state.delivered(flush, [])
    assert dispatch.become is None and dispatch.invoke == [(1, (10,))]


def test_flushes_are_due_when_local_work_runs_out_or_the_interval_passes() -> None:
    clock = Clock()
    chain = spec(0, task(0, 0, successors=[Successor(1, 0, 1, True)], wanted=True),
                 task(1, 0, deps=[0]), interval_s=0.5)
    state = InvocationState(chain, "w", clock)
    assert not state.flush_due()  # nothing pending, nothing to run
    state.enter(0, [0])
    info = state.next_task()
    assert info is not None
    state.finished(info, 0)
    assert state.ready and not state.flush_due()  # local work left, interval not passed
    clock.now = 0.6
    assert state.flush_due()
    state.take_flush()
    assert state.ready and not state.flush_due()  # the new batch started at 0.6
    run_all(state)
    assert state.flush_due()  # out of local work with finished tasks to report


def test_marks_of_a_successor_that_ends_up_here_are_forgotten() -> None:
    s = Successor(5, 0, 3, False)  # not local: one of its inputs comes from partition 1
    state = InvocationState(spec(0, task(0, 0, successors=[s]), task(1, 0, successors=[s])), "w")
    state.enter(0, [0])
    run_all(state)
    assert [m for m, _ in state.outbox.all_marks()] == [Mark(5, 0, 3)]
    state.enter(0, [1])
    run_all(state)
    assert [m for m, _ in state.outbox.all_marks()] == [Mark(5, 0, 3), Mark(5, 1, 3)]


def test_fetched_entry_inputs_are_released_once_the_entered_tasks_used_them() -> None:
    x = task(1, 0, deps=[99])
    y = task(2, 0, deps=[99])
    state = InvocationState(spec(0, x, y), "w")
    missing: list[tuple[int, Hashable]] = state.enter(0, [1, 2])
    assert missing == [(99, "t99")]
    state.provide(99, "fetched")
    info = state.next_task()
    assert info is not None
    inputs, absent = state.take_inputs(info)
    assert inputs == {"t99": "fetched"} and absent == []
    assert 99 in state.held  # the other entry still needs it
    info = state.next_task()
    assert info is not None
    state.take_inputs(info)
    assert 99 not in state.held


def test_an_input_neither_held_nor_fetched_is_read_from_the_store() -> None:
    consumer = task(7, 1, deps=[0, 3])
    state = InvocationState(spec(1, consumer), "w")
    state.enter(1, [7])
    state.held[0] = "here"
    state.uses[0] = 1
    info = state.next_task()
    assert info is not None
    inputs, absent = state.take_inputs(info)
    assert inputs == {"t0": "here"} and absent == [(3, "t3")]


def test_events_waiting_go_out_with_finished_tasks_last() -> None:
    state = InvocationState(spec(0, task(0, 0), task(1, 0)), "w")
    state.enter(0, [0, 1])
    run_all(state)
    marker = TasksFinished("other", (99,))
    state.event(marker)
    assert state.take_events() == [marker, TasksFinished("w", (0, 1))]
    assert state.take_events() == []
