"""optalloc.testing.strategies: validated arguments, the promised shapes, feasibility, broken allocations."""

from __future__ import annotations

import types

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import optalloc.testing
from optalloc import Allocation, Job, Node, ObjectiveWeights, Placement, PlacementRule, Problem, Status, verify
from optalloc.core import Kind
from optalloc.testing import invariants
from optalloc.testing import strategies as ost
from optalloc.testing._bruteforce import place_all

RELAXED = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def public_names(module: types.ModuleType) -> set[str]:
    """What a module offers: non-underscore names defined in it or re-exported from a private module
    of the package (a package: everything it re-exports), no submodules."""
    package = hasattr(module, "__path__")

    def offered(value: object) -> bool:
        home = getattr(value, "__module__", module.__name__)
        return package or home == module.__name__ or home.startswith("optalloc.testing._")

    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and offered(value)
    }


@pytest.mark.parametrize("module", [ost, invariants, optalloc.testing], ids=lambda m: m.__name__)
def test_all_lists_exactly_the_public_names(module):
    assert sorted(module.__all__) == sorted(public_names(module))


# Arguments are validated when the strategy is built --------------------------------------------------
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ost.nodes(max_gpus=-1), "max_gpus=-1 must be at least 0"),
        (lambda: ost.nodes(min_gpus=3, max_gpus=2), "min_gpus=3 is above max_gpus=2"),
        (lambda: ost.nodes(name=""), "name='' must be a non-empty string"),
        (lambda: ost.nodes(max_cpu=999), "max_cpu=999 must be at least 1000"),
        (lambda: ost.nodes(gpu_models="T4"), "must be a collection of GPU model names"),
        (lambda: ost.nodes(gpu_models=["T4|A100"]), "is not a GPU model name"),
        (lambda: ost.nodes(features=["wings"]), "features: wings not in gpu-memory, labels"),
        (lambda: ost.clusters(max_nodes=1.5), "max_nodes=1.5 must be an integer"),
        (lambda: ost.clusters(min_nodes=True), "min_nodes=True must be an integer"),
        (lambda: ost.jobs(kinds=[]), "kinds must name at least one of"),
        (lambda: ost.jobs(kinds=["tpu"]), "kinds: tpu not in cpu-only, whole-gpu, gpu-share"),
        (lambda: ost.jobs(max_replicas=0), "max_replicas=0 must be at least 1"),
        (lambda: ost.problems(max_jobs=-1), "max_jobs=-1 must be at least 0"),
        (lambda: ost.problems(min_jobs=5, max_jobs=2), "min_jobs=5 is above max_jobs=2"),
        (lambda: ost.problems(feasible="yes"), "feasible='yes' must be True, False or None"),
        (lambda: ost.problems(with_running=None), "with_running=None must be True or False"),
        (lambda: ost.problems(weights={"migration": 1}), "weights=.* must be ObjectiveWeights"),
        (lambda: ost.problems(features=["gang", "teleport"]), "features: teleport not in"),
        (lambda: ost.allocations("problem"), "problem='problem' must be a Problem"),
        (lambda: ost.allocations(Problem([], []), valid=1), "valid=1 must be True or False"),
        (lambda: ost.allocations(Problem([], []), kinds=[Kind.CPU]), "kinds= only applies to valid=False"),
        (lambda: ost.allocations(Problem([], []), valid=False, kinds=["cpu"]), "kinds: 'cpu' is not a valid Kind"),
        (lambda: ost.allocations(Problem([], []), valid=False, kinds=[]), "kinds must name at least one Kind"),
    ],
)
def test_bad_arguments_raise_invalid_argument_before_any_draw(build, message):
    with pytest.raises(InvalidArgument, match=message):
        build()


# Shapes ------------------------------------------------------------------------------------------------
@given(ost.nodes(name="gpu-box", min_gpus=1, max_gpus=2, gpu_models=["H100"]))
def test_nodes_have_the_asked_name_gpus_and_model_in_round_units(node):
    assert node.name == "gpu-box"
    assert 1 <= node.gpus <= 2 and node.gpu_model == "H100"
    assert node.cpu % 1000 == 0 and 1000 <= node.cpu <= 16000
    assert node.memory % 1024 == 0 and node.memory >= 1024
    assert node.gpu_memory in (0, 16384, 32768)
    assert set(node.labels) <= {"zone"}


@given(ost.nodes(gpu_models=(), features=()))
def test_nodes_without_models_or_features_are_plain(node):
    assert node.gpu_model is None and node.gpu_memory == 0 and not node.labels


@given(ost.clusters(min_nodes=2, max_nodes=5))
def test_clusters_name_nodes_in_order(nodes):
    assert 2 <= len(nodes) <= 5
    assert [n.name for n in nodes] == [f"n{i}" for i in range(len(nodes))]


@given(ost.jobs(kinds=["cpu-only"], features=()))
def test_cpu_only_jobs_without_features_are_single_plain_replicas(job):
    assert job.gpu_demand == 0 and job.replicas == 1 and not job.is_elastic
    assert job.placement is PlacementRule.ANY and job.priority == 0 and job.duration is None
    assert not job.gpu_models and not job.node_selector and job.gpu_memory == 0 and job.preemptible


@given(ost.jobs(kinds=["whole-gpu"], max_gpus=2, max_replicas=4))
def test_whole_gpu_jobs_respect_their_bounds(job):
    assert 1 <= job.gpus <= 2 and job.gpu_milli == 0
    assert 1 <= job.min_replicas <= job.replicas <= 4
    assert job.cpu % 250 == 0 and job.memory % 512 == 0
    assert job.gpu_models <= set(ost.GPU_MODELS)


@given(ost.jobs(kinds=["gpu-share"], features=["spread", "single-node"]))
def test_sharing_jobs_take_a_share_of_one_gpu_and_only_the_allowed_placements(job):
    assert 1 <= job.gpu_milli <= 999 and job.gpus == 0 and job.gpus_used == 1
    assert job.placement in (PlacementRule.ANY, PlacementRule.SPREAD, PlacementRule.SINGLE_NODE)


@given(ost.problems(min_jobs=1, max_jobs=5, min_nodes=2, max_nodes=3))
def test_problems_respect_their_sizes_and_name_jobs_uniquely(problem):
    assert 1 <= len(problem.jobs) <= 5 and 2 <= len(problem.nodes) <= 3
    assert len({j.name for j in problem.jobs}) == len(problem.jobs)
    assert problem.current is None


@given(ost.problems(weights=st.builds(ObjectiveWeights, migration=st.integers(0, 5))))
def test_problems_draw_weights_from_a_strategy(problem):
    assert problem.weights.migration <= 5


FEATURES = {
    "gang": lambda j: j.replicas > 1 and not j.is_elastic,
    "elastic": lambda j: j.is_elastic,
    "gpu-models": lambda j: bool(j.gpu_models),
    "node-selector": lambda j: bool(j.node_selector),
    "pack": lambda j: j.placement is PlacementRule.PACK,
    "spread": lambda j: j.placement is PlacementRule.SPREAD,
    "single-node": lambda j: j.placement is PlacementRule.SINGLE_NODE,
    "priority": lambda j: j.priority > 0,
    "arrival": lambda j: j.arrival > 0,
    "duration": lambda j: j.duration is not None,
    "gpu-memory": lambda j: j.gpu_memory > 0,
    "whole-gpu": lambda j: j.gpus > 0,
    "gpu-share": lambda j: j.shares_gpu,
    "cpu-only": lambda j: j.gpu_demand == 0,
    "pinned": lambda j: not j.preemptible,
}


def test_every_kind_and_feature_appears_among_generated_problems():
    seen: set[str] = set()

    @settings(max_examples=100, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(ost.problems(with_running=True))
    def collect(problem):
        seen.update(name for name, holds in FEATURES.items() if any(holds(j) for j in problem.jobs))

    collect()
    assert seen == set(FEATURES)


def test_problems_shrink_to_plain_small_jobs():
    problem = find(ost.problems(), lambda p: len(p.jobs) >= 2, settings=settings(database=None))
    assert problem.jobs == (Job("j0"), Job("j1"))
    assert problem.nodes == (Node("n0", cpu=1000, memory=1024),)


# Feasibility ----------------------------------------------------------------------------------------------
def unplaced_rest(problem: Problem, current: Allocation) -> Allocation:
    from optalloc import Unplaced

    rest = [Unplaced(j.name, "not selected") for j in problem.jobs if j.name not in current.placed_jobs]
    return Allocation(current.placements, tuple(rest))


@RELAXED
@given(ost.problems(max_jobs=5, max_nodes=3, with_running=True))
def test_running_jobs_form_a_valid_allocation(problem):
    assert problem.current is not None
    assert verify(problem, unplaced_rest(problem, problem.current)) == []


@RELAXED
@given(ost.problems(max_jobs=5, max_nodes=3, feasible=True, with_running=True))
def test_feasible_problems_place_every_job_at_once(problem):
    witness = place_all(problem)
    assert witness is not None
    assert verify(problem, witness) == []


@RELAXED
@given(ost.problems(max_jobs=4, max_nodes=3, feasible=False, with_running=True))
def test_infeasible_problems_hold_a_job_that_never_fits(problem):
    assert place_all(problem) is None


def test_place_all_finds_the_packing_a_greedy_misses():
    nodes = [Node("n0", cpu=1000, memory=1024, gpus=4), Node("n1", cpu=1000, memory=1024, gpus=4)]
    jobs = [Job("a", gpus=3), Job("b", gpus=2), Job("c", gpus=2), Job("d", gpus=1)]
    found = place_all(Problem(nodes, jobs))
    assert found is not None and verify(Problem(nodes, jobs), found) == []
    assert place_all(Problem(nodes, [*jobs, Job("e", gpus=1)])) is None


# Allocations --------------------------------------------------------------------------------------------------
@RELAXED
@given(st.data(), ost.problems(max_jobs=6, max_nodes=3, with_running=True))
def test_valid_allocations_verify_and_keep_pinned_jobs_in_place(data, problem):
    answer = data.draw(ost.allocations(problem))
    assert verify(problem, answer) == []
    assert answer.status is Status.FEASIBLE


GiB = 1024
# A problem on which every rule can be broken, whatever valid allocation is drawn first.
RICH = Problem(
    (
        Node("n0", cpu=4000, memory=8 * GiB, gpus=2, gpu_model="T4", gpu_memory=16 * GiB, labels={"zone": "a"}),
        Node("n1", cpu=4000, memory=8 * GiB, gpus=2, gpu_model="A100", gpu_memory=16 * GiB, labels={"zone": "b"}),
    ),
    (
        Job("big-cpu", cpu=4000),
        Job("big-memory", memory=8 * GiB),
        Job("whole", gpus=1),
        Job("share", gpu_milli=700),
        Job("share-memory", gpu_milli=300, gpu_memory=12 * GiB),
        Job("t4-only", gpu_milli=100, gpu_models={"T4"}),
        Job("zone-a", node_selector={"zone": "a"}),
        Job("spread", replicas=2, placement="spread"),
        Job("single", replicas=2, placement="single-node"),
        Job("pinned-gpu", cpu=100, memory=256, gpus=1, preemptible=False),
        Job("pinned-share", cpu=100, memory=256, gpu_milli=700, gpu_memory=8 * GiB, preemptible=False),
    ),
    Allocation(
        (Placement("pinned-gpu", 0, "n1", (0,), 1000), Placement("pinned-share", 0, "n1", (1,), 700)),
        method="current",
        status="feasible",
    ),
)
# Kinds that need a particular valid allocation to start from (a gang placed whole, two jobs placed).
SOMETIMES = {Kind.GANG, Kind.DUPLICATE_REPLICA}


@pytest.mark.parametrize("kind", list(Kind), ids=lambda k: k.name)
def test_broken_allocations_break_exactly_the_asked_kind(kind):
    @settings(max_examples=15, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        broken = data.draw(ost.allocations(RICH, valid=False, kinds=[kind]))
        assert broken.kind is kind
        violations = verify(RICH, broken.allocation)
        assert {v.kind for v in violations} == {kind}, [str(v) for v in violations]

    check()


def test_with_no_applicable_kind_the_example_is_rejected():
    empty = Problem([], [])
    strategy = ost.allocations(empty, valid=False, kinds=[Kind.GANG])
    with pytest.raises(Exception, match=r"Unsatisfiable|unsatisfiable|filter"):
        find(strategy, lambda b: True, settings=settings(database=None, max_examples=5))


def test_every_problem_can_be_broken_by_an_unknown_job():
    broken = find(ost.allocations(Problem([], []), valid=False), lambda b: True, settings=settings(database=None))
    assert broken.kind is Kind.UNKNOWN_JOB
    assert [str(v) for v in verify(Problem([], []), broken.allocation)] == [
        "unknown job: unplaced list names job 'ghost-job', which the problem does not have"
    ]
