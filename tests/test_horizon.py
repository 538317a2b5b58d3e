"""The time-indexed horizon model: who starts now, and when the others would."""

from __future__ import annotations

import pytest

from optalloc import Allocation, Job, Node, Placement, Problem, ProblemError
from optalloc.models.horizon import HorizonConfig, node_groups, plan_horizon


def one_gpu_cluster(n: int = 1) -> tuple[Node, ...]:
    return tuple(Node(f"n{i}", cpu=8000, memory=64000, gpus=1, gpu_model="A", gpu_memory=16000) for i in range(n))


def test_orders_short_jobs_first_on_a_toy_queue() -> None:
    jobs = (
        Job("long", gpus=1, duration=1000, arrival=0),
        Job("short", gpus=1, duration=100, arrival=1),
        Job("mid", gpus=1, duration=300, arrival=2),
    )
    plan = plan_horizon(Problem(one_gpu_cluster(), jobs), config=HorizonConfig(horizon=2400, slots=24))
    assert plan.status == "optimal"
    assert plan.start_now == ("short",)
    assert plan.start["short"] == 0.0
    assert plan.start["mid"] == 100.0
    assert plan.start["long"] == 400.0
    # Weighted completion from now: 100 + 400 + 1400 seconds, and proven.
    assert plan.objective == pytest.approx(1900.0)
    assert plan.bound == pytest.approx(1900.0)


def test_priority_weight_beats_shortness() -> None:
    jobs = (Job("short", gpus=1, duration=100), Job("urgent", gpus=1, duration=500, priority=5))
    plan = plan_horizon(Problem(one_gpu_cluster(), jobs), config=HorizonConfig(horizon=2400, slots=24))
    assert plan.start_now == ("urgent",)


def test_running_jobs_hold_their_resources_for_their_remaining_time() -> None:
    running = Job("run", gpus=1, duration=1000)
    queued = Job("next", gpus=1, duration=100, arrival=1)
    current = Allocation((Placement("run", 0, "n0", (0,), 1000),))
    problem = Problem(one_gpu_cluster(), (running, queued), current=current)
    plan = plan_horizon(problem, remaining={"run": 250.0}, config=HorizonConfig(horizon=1000, slots=10))
    assert plan.start_now == ()
    assert plan.start["next"] == 300.0  # the first slot after the running job's 3 remaining slots


def test_running_job_of_unknown_remaining_time_holds_the_whole_horizon() -> None:
    current = Allocation((Placement("run", 0, "n0", (0,), 1000),))
    problem = Problem(one_gpu_cluster(), (Job("run", gpus=1), Job("next", gpus=1, duration=10)), current=current)
    plan = plan_horizon(problem, config=HorizonConfig(horizon=1000, slots=10))
    assert plan.start == {"next": None}
    assert plan.start_now == ()


def test_jobs_share_a_group_capacity_and_fill_it_now() -> None:
    jobs = tuple(Job(f"j{i}", gpus=1, duration=100 * (i + 1)) for i in range(4))
    plan = plan_horizon(Problem(one_gpu_cluster(2), jobs), config=HorizonConfig(horizon=1000, slots=10))
    assert set(plan.start_now) == {"j0", "j1"}  # the two shortest start on the two GPUs


def test_a_job_no_node_group_can_host_is_listed_not_lost() -> None:
    jobs = (Job("huge", gpus=4), Job("ok", gpus=1, duration=10))
    plan = plan_horizon(Problem(one_gpu_cluster(2), jobs), config=HorizonConfig(horizon=100, slots=10))
    assert plan.ungrouped == ("huge",) and plan.unscheduled == ()
    assert plan.start_now == ("ok",)


def test_max_jobs_keeps_the_model_small_and_lists_the_rest() -> None:
    jobs = tuple(Job(f"j{i}", gpus=1, duration=10, arrival=i) for i in range(10))
    plan = plan_horizon(Problem(one_gpu_cluster(), jobs), config=HorizonConfig(horizon=100, slots=10, max_jobs=4))
    assert len(plan.start) == 4
    assert plan.unscheduled == tuple(f"j{i}" for i in range(4, 10))


def test_nodes_of_one_shape_form_one_group() -> None:
    nodes = (*one_gpu_cluster(3), Node("big", cpu=64000, memory=256000, gpus=8, gpu_model="A"))
    groups = node_groups(Problem(nodes, ()))
    assert [g.nodes for g in groups] == [(0, 1, 2), (3,)]
    assert groups[0].capacity == (24000, 192000, 3000)


def test_many_jobs_answer_within_the_time_limit() -> None:
    nodes = tuple(Node(f"n{i}", cpu=64000, memory=256000, gpus=8, gpu_model="A") for i in range(20))
    jobs = tuple(Job(f"j{i}", gpus=1 + i % 4, cpu=4000, duration=60 * (1 + i % 17), arrival=i) for i in range(200))
    plan = plan_horizon(Problem(nodes, jobs), config=HorizonConfig(horizon=3600, slots=24, max_jobs=64, time_limit=0.5))
    assert plan.wall_time < 3.0
    assert plan.status in ("optimal", "feasible", "greedy")
    assert plan.start_now  # there is room for some of them now


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ProblemError, match=r"horizon.slots: 0"):
        HorizonConfig(slots=0)


def test_slot_boundaries_grow_geometrically_and_end_at_the_horizon() -> None:
    uniform = HorizonConfig(horizon=100, slots=4).boundaries
    assert uniform.tolist() == [0, 25, 50, 75, 100]
    grown = HorizonConfig(horizon=150, slots=4, growth=2.0).boundaries
    assert grown.tolist() == [0, 10, 30, 70, 150]


def test_the_model_beats_the_list_schedule_where_packing_matters() -> None:
    # 4 x 8 GPUs; a mix of 1/2/4/8-GPU jobs: shortest-first list scheduling leaves GPUs idle.
    nodes = tuple(Node(f"n{i}", cpu=64000, memory=256000, gpus=8, gpu_model="A") for i in range(4))
    jobs = tuple(
        Job(f"j{i}", gpus=(1, 2, 4, 8)[i % 4], cpu=4000, memory=8000, duration=60 * (1 + i % 7), arrival=i)
        for i in range(40)
    )
    plan = plan_horizon(Problem(nodes, jobs), config=HorizonConfig(horizon=3600, slots=24, time_limit=5.0))
    assert plan.status == "optimal"
    assert plan.objective == pytest.approx(20100.0)  # the WSPT list schedule reaches 24600
    assert plan.wall_time < 5.0


def test_a_geometric_grid_sees_jobs_longer_than_its_first_slots() -> None:
    jobs = (Job("week", gpus=1, duration=7 * 86400.0), Job("day", gpus=1, duration=86400.0, arrival=1))
    cfg = HorizonConfig(horizon=14 * 86400.0, slots=16, growth=1.25)
    plan = plan_horizon(Problem(one_gpu_cluster(), jobs), config=cfg)
    assert plan.start_now == ("day",)
    start = plan.start["week"]
    assert start is not None and 86400.0 <= start < 2 * 86400.0  # the first boundary after the day job
