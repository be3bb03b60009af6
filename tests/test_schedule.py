from dataset_builder.schedule import serpentine


def test_algorithm1_hand_worked_example():
    # 7 tiles, 3 workers. Sorted by count: g9 a8 e7 b6 d5 c4 f3.
    # row 0 (left to right):  w0 <- g9, w1 <- a8, w2 <- e7
    # row 1 (right to left):  w2 <- b6, w1 <- d5, w0 <- c4
    # row 2 (left to right):  w0 <- f3
    items = ["a", "b", "c", "d", "e", "f", "g"]
    counts = [8, 6, 4, 5, 7, 3, 9]
    assert serpentine(items, counts, 3) == [["g", "c", "f"], ["a", "d"], ["e", "b"]]


def test_every_tile_once_and_balanced():
    items = list(range(20))
    counts = [8281] * 10 + list(range(100, 1100, 100))
    plan = serpentine(items, counts, 4)
    assert sorted(i for w in plan for i in w) == items
    totals = [sum(counts[i] for i in w) for w in plan]
    assert max(totals) - min(totals) <= max(counts)


def test_one_worker_takes_all_in_order():
    assert serpentine(["a", "b", "c"], [1, 3, 2], 1) == [["b", "c", "a"]]


def test_greedy_and_round_robin_deal_every_item_once():
    from dataset_builder.schedule import greedy, round_robin
    items = list("abcdefgh")
    counts = [5, 1, 9, 3, 3, 7, 2, 6]
    assert round_robin(items, counts, 3) == [["a", "d", "g"], ["b", "e", "h"], ["c", "f"]]
    plan = greedy(items, counts, 3)
    assert sorted(i for w in plan for i in w) == items
    # LPT by hand: c9->w0, f7->w1, h6->w2, a5->w2(6), d3->w1(7), e3->w0(9)... loads end 12/12/12
    assert sorted(sum(counts[items.index(i)] for i in w) for w in plan) == [12, 12, 12]


def test_algorithm1_table_comes_from_the_official_lists():
    """The per-product patch counts of BigEarthNet v1, derived from the official lists."""
    import sys

    from .conftest import ROOT, fixtures_dir
    lists = fixtures_dir("bigearthnet-lists")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import algorithm1
    finally:
        sys.path.pop(0)
    counts = algorithm1.product_counts(lists)
    assert (sum(counts.values()), len(counts), min(counts.values()), max(counts.values())) == (590_326, 125, 30, 8_281)
    items = sorted(counts)
    plan = serpentine(items, [counts[p] for p in items], 72)
    assert algorithm1.imbalance(plan, counts) < 1.1  # the paper's 72 workers: within 10 % of the mean
