"""The data model validates itself and builds its numpy views once."""

import numpy as np
import pytest

from optalloc import Allocation, Job, Node, Placement, Problem, ProblemError, Unplaced
from optalloc.core import ObjectiveWeights, PlacementRule, Status, evaluate


def test_job_rejects_negative_gpus_naming_field_and_value():
    with pytest.raises(ProblemError, match=r"^gpus: -1 is negative$"):
        Job("a", gpus=-1)


def test_problem_prefixes_the_index_of_a_bad_job():
    with pytest.raises(ProblemError, match=r"jobs\[1\]\.name: 'a' duplicates jobs\[0\]"):
        Problem([Node("n", cpu=1)], [Job("a"), Job("a")])


def test_share_of_a_whole_gpu_or_more_is_rejected():
    with pytest.raises(ProblemError, match="gpu_milli: 1000 is not a share"):
        Job("a", gpu_milli=1000)


def test_whole_gpus_and_a_share_together_are_rejected():
    with pytest.raises(ProblemError, match="gpu_milli: 500 is set with gpus=2"):
        Job("a", gpus=2, gpu_milli=500)


def test_non_integer_quantities_are_rejected_but_integral_floats_accepted():
    with pytest.raises(ProblemError, match=r"cpu: 1\.5 is not an integer"):
        Node("n", cpu=1.5)
    assert Node("n", cpu=np.int64(4000), memory=2.0).cpu == 4000


def test_min_replicas_above_replicas_is_rejected():
    with pytest.raises(ProblemError, match="min_replicas: 5 is above replicas=2"):
        Job("a", replicas=2, min_replicas=5)


def test_unknown_gpu_model_is_a_problem_error_listing_known_models():
    with pytest.raises(
        ProblemError, match=r"jobs\[0\]\.gpu_models: 'V100X' is not a GPU model of this cluster \(known: T4\)"
    ):
        Problem([Node("n", gpus=1, gpu_model="T4")], [Job("a", gpus=1, gpu_models={"V100X"})])


def test_catalogue_keeps_a_model_whose_nodes_were_removed():
    p = Problem([Node("n", gpus=1, gpu_model="T4")], [Job("a", gpus=1, gpu_models={"V100"})], gpu_models={"V100"})
    assert not p.hostable(0)


def test_placement_rule_is_validated():
    with pytest.raises(ProblemError, match="placement: 'clumped' is not one of any, pack, spread, single-node"):
        Job("a", placement="clumped")
    assert Job("a", placement="spread").placement is PlacementRule.SPREAD


def test_gpu_model_string_splits_on_bars_like_openb_gpu_spec():
    assert Job("a", gpus=1, gpu_models="V100M16|V100M32").gpu_models == {"V100M16", "V100M32"}


def test_views_are_integer_arrays_in_canonical_units():
    p = Problem(
        [Node("n0", cpu=8000, memory=64, gpus=2, gpu_model="T4"), Node("n1", cpu=4000, memory=32)],
        [Job("a", cpu=1000, memory=4, gpus=2), Job("b", cpu=500, gpu_milli=250), Job("c", cpu=100)],
    )
    assert p.capacity.tolist() == [[8000, 64, 2000], [4000, 32, 0]]
    assert p.demand.tolist() == [[1000, 4, 2000], [500, 0, 250], [100, 0, 0]]
    assert p.node_model.tolist() == [0, -1]
    assert p.replica_value.tolist() == [2000, 250, 10]


VIEWS = (
    "capacity",
    "node_gpus",
    "node_gpu_memory",
    "node_model",
    "demand",
    "job_gpus",
    "job_share",
    "job_gpu_memory",
    "job_replicas",
    "job_min_replicas",
    "job_priority",
    "job_arrival",
    "job_duration",
    "priority_weight",
    "replica_value",
)


@pytest.mark.parametrize("view", VIEWS)
def test_the_problems_arrays_are_read_only(view):
    """A frozen problem shares its arrays with every engine: writing into one is an error, not a
    silent change of the problem for every later reader."""
    p = Problem(
        (Node("n0", cpu=8000, memory=64, gpus=2, gpu_model="V100"),),
        (Job("a", cpu=1000, memory=4, gpus=1, gpu_models={"V100"}, priority=2), Job("b", cpu=500)),
    )
    array = getattr(p, view)
    before = array.copy()
    assert not array.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        array[...] = 0
    assert np.array_equal(getattr(p, view), before, equal_nan=array.dtype.kind == "f")
    copy = array.copy()  # the way to change one: a copy
    copy[...] = 0


def test_the_arrays_stay_read_only_through_pickling():
    import pickle

    p = Problem((Node("n0", cpu=8, memory=8, gpus=1, gpu_model="V100"),), (Job("a", gpus=1, gpu_models={"V100"}),))
    p.capacity, p.allowed_nodes(0)
    q = pickle.loads(pickle.dumps(p))
    assert not q.capacity.flags.writeable and not q.allowed_nodes(0).flags.writeable
    assert q.capacity.tolist() == p.capacity.tolist()


def test_allowed_nodes_masks_are_read_only():
    p = Problem((Node("n0", cpu=8, memory=8, gpus=1, gpu_model="V100"),), (Job("a", gpus=1, gpu_models={"V100"}),))
    with pytest.raises(ValueError, match="read-only"):
        p.allowed_nodes(0)[0] = False
    assert p.allowed_nodes("a").tolist() == [True]


def test_hostable_sees_single_node_gangs_that_no_node_can_hold():
    nodes = [
        Node("n0", cpu=8000, memory=64, gpus=4, gpu_model="T4"),
        Node("n1", cpu=8000, memory=64, gpus=4, gpu_model="T4"),
    ]
    whole = Job("w", gpus=2, replicas=3, placement="single-node")
    split = Job("s", gpus=2, replicas=3)
    p = Problem(nodes, [whole, split])
    assert not p.hostable("w")
    assert p.hostable("s")


def test_priority_weights_rank_levels():
    p = Problem([Node("n", cpu=1)], [Job("a", priority=-5), Job("b", priority=7), Job("c", priority=7)])
    assert p.priority_weight.tolist() == [1, 10, 10]


def test_allocation_gap_and_status_as_data():
    a = Allocation(status="feasible", objective=90, bound=100)
    assert a.status is Status.FEASIBLE
    assert a.gap == pytest.approx(0.1)
    with pytest.raises(Exception, match="status unknown"):
        Allocation(method="x").raise_for_status()


def test_diff_counts_starts_stops_and_moved_replicas():
    before = Allocation([Placement("a", 0, "n0"), Placement("a", 1, "n0"), Placement("b", 0, "n1")])
    after = Allocation([Placement("a", 0, "n0"), Placement("a", 1, "n1"), Placement("c", 0, "n1")])
    d = after.diff(before)
    assert d.starts == ("c",) and d.stops == ("b",) and d.migrations == ("a",) and d.moved_replicas == 1


def test_evaluate_subtracts_secondary_terms_unless_lexicographic():
    nodes = [Node("n0", cpu=8000, gpus=2, gpu_model="T4"), Node("n1", cpu=8000, gpus=2, gpu_model="T4")]
    jobs = [Job("a", gpu_milli=500, replicas=2)]
    alloc = Allocation(
        [Placement("a", 0, "n0", (0,), 500), Placement("a", 1, "n1", (0,), 500)], unplaced=[Unplaced("b", "x")]
    )
    value = evaluate(Problem(nodes, jobs), alloc)
    assert (value.primary, value.partial_gpus, value.extra_nodes, value.total) == (1000, 2, 1, 997)
    lex = evaluate(Problem(nodes, jobs, weights=ObjectiveWeights(lexicographic=True)), alloc)
    assert lex.total == 1000


def test_a_problem_error_pickles_with_its_field_value_and_reason():
    """Raised in a worker process or a Ray task (a POP part), it must travel back to the caller."""
    import pickle

    from optalloc.core import ProblemError

    err = pickle.loads(pickle.dumps(ProblemError("jobs[3].gpus", -1, "is negative")))
    assert (err.field, err.value, err.reason, str(err)) == (
        "jobs[3].gpus",
        -1,
        "is negative",
        "jobs[3].gpus: -1 is negative",
    )


def test_placements_and_unplaced_entries_hold_no_per_instance_dict():
    # (slots: 150,000 entries of an answer cost a third less to build, and less memory)
    assert not hasattr(Placement("j", 0, "n"), "__dict__")
    assert not hasattr(Unplaced("j", "time limit"), "__dict__")
    with pytest.raises(AttributeError):
        Placement("j", 0, "n").job = "k"  # type: ignore[misc]


def test_answers_pickle_to_equal_entries_with_no_per_entry_state_function():
    import pickle

    a = Allocation(
        (Placement("j", 1, "n", (0, 2), 1000), Placement("s", 0, "n", (1,), 250)),
        (Unplaced("k", "time limit", "why"),),
        method="m",
        status="feasible",
        stats={"x": 1},
    )
    b = pickle.loads(pickle.dumps(a))
    assert b == a and b.placements == a.placements and b.unplaced == a.unplaced and dict(b.stats) == {"x": 1}
    assert [hash(p) for p in b.placements] == [hash(p) for p in a.placements]
    # (each entry pickles as its values, restored by the trusted constructor: not through dataclasses' own
    # state functions, 2.4 times slower for a slotted class)
    assert Placement("j", 0, "n").__reduce__()[0].__name__ == "placement_of"
    assert Unplaced("j", "time limit").__reduce__()[0].__name__ == "unplaced_of"


def test_replace_keeps_the_entries_and_checks_what_it_is_given():
    a = Allocation((Placement("j", 0, "n"),), (Unplaced("k", "time limit"),), method="m", status="feasible")
    b = a.replace(wall_time=2.0, status="optimal")
    assert b.placements is a.placements and b.unplaced is a.unplaced
    assert b.status is Status.OPTIMAL and b.wall_time == 2.0 and b.method == "m"
    assert b.placed_jobs == {"j"} and b.unplaced_jobs == {"k"}
    with pytest.raises(ProblemError, match="status"):
        a.replace(status="done")
    with pytest.raises(ProblemError, match=r"placements\[0\]"):
        a.replace(placements=("j",))
    assert a.replace(unplaced=()).unplaced == () and a.replace(unplaced=()).placements == a.placements


def test_job_names_follow_the_job_list():
    jobs = tuple(Job(name, cpu=1000, memory=1) for name in ("b", "a", "c"))
    problem = Problem(nodes=(Node("n", cpu=4000, memory=8),), jobs=jobs)
    assert problem.job_names == ("b", "a", "c")
