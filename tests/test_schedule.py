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
