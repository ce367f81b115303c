from deepshrink.train.metrics import MetricsLog


def test_append_read_keep_and_torn_line(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    for epoch in (1, 2, 3):
        log.write({"epoch": epoch, "loss": 1.0 / epoch})
    with open(log.path, "a") as handle:
        handle.write('{"epoch": 4, "lo')  # torn by a crash
    assert [r["epoch"] for r in log.read()] == [1, 2, 3]
    log.keep(lambda r: r["epoch"] <= 2)
    assert [r["epoch"] for r in log.read()] == [1, 2]


def test_no_path_is_a_no_op():
    log = MetricsLog(None)
    log.write({"a": 1})
    assert log.read() == []
