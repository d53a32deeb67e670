"""The Drain3 template miner: masking, grouping, stable ids, bounds, and grouping accuracy on Loghub HDFS."""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from pathlib import Path

import pytest

from analysis.templates import TemplateMiner

REPO_ROOT = Path(__file__).resolve().parent.parent
LOGHUB = Path(os.environ.get("LOGHUB_2K_DIR", "")) if os.environ.get("LOGHUB_2K_DIR") else None


@pytest.mark.parametrize(
    ("message", "masked"),
    [
        ("connect to 10.0.0.5:5432 failed", "connect to <IP> failed"),
        ("peer 192.168.1.20 down", "peer <IP> down"),
        ("listening on [2001:db8::1]:8080", "listening on <IP>"),
        ("route via fe80::1ff:fe23:4567:890a", "route via <IP>"),
        ("addr 2001:0db8:85a3:0000:0000:8a2e:0370:7334 up", "addr <IP> up"),
        ("mapped ::ffff:10.1.2.3 ok", "mapped <IP> ok"),
        ("order 3f2a1b4c-1234-4abc-8def-0123456789ab paid", "order <UUID> paid"),
        ("ptr 0xDEADbeef commit 9f86d081884c7d65", "ptr <NUM> commit <NUM>"),
        ("trace req_8f3a9c2b1d7e", "trace req_<NUM>"),
        ("took 12ms then 3.5s, 1h2m3s total", "took <DUR> then <DUR>, <DUR> total"),
        ("wrote 200MB of 1.5GiB", "wrote <SIZE> of <SIZE>"),
        ("retries=3 ratio=0.75 delta -42 at 85%", "retries=<NUM> ratio=<NUM> delta <NUM> at <NUM>%"),
        ('query failed q="select * from t where id = 1"', "query failed q=<STR>"),
        ("mail bob.smith+x@example.co.uk now", "mail <EMAIL> now"),
        ("GET https://api.example.com/v1/orders/12?x=1 500", "GET <URL> <NUM>"),
        ("GET /api/orders/8812/items", "GET /api/orders/<NUM>/items"),
        ("at 2026-11-21T12:00:03.120Z done", "at <TS> done"),
        ("blk_-6952295868487656571 node-246", "blk_<NUM> node-<NUM>"),
    ],
)
def test_mask_replaces_variable_values(message, masked):
    assert TemplateMiner().mask(message) == masked


def test_mask_keeps_words_code_and_times_readable():
    miner = TemplateMiner()
    assert miner.mask("deadline exceeded in std::vector facade") == "deadline exceeded in std::vector facade"
    assert miner.mask("tick at 12:01:59") == "tick at <NUM>:<NUM>:<NUM>"


def test_extra_masks_run_before_the_defaults():
    miner = TemplateMiner(extra_masks=[(r"blk_-?\d+", "BLK")])
    assert miner.mask("deleting blk_-123 from 10.0.0.1") == "deleting <BLK> from <IP>"
    assert TemplateMiner(extra_masks=[(r"core\.\d+", "*")], default_masks=False).mask("core.12 at 3") == (
        "<*> at 3"
    )


def test_same_shape_messages_share_one_template():
    miner = TemplateMiner()
    ids = {
        miner.add(f"Connection to 10.0.{i}.7:5432 timed out after {i * 7}ms (attempt {i})")[0]
        for i in range(50)
    }
    assert len(ids) == 1
    assert miner.template(ids.pop()) == "Connection to <IP> timed out after <DUR> (attempt <NUM>)"


def test_unmasked_variable_word_generalises_into_a_wildcard():
    miner = TemplateMiner()
    first, _ = miner.add("Invalid user admin from 10.0.0.1 port 22")
    second, text = miner.add("Invalid user oracle from 10.0.0.2 port 4022")
    assert first == second
    assert text == "Invalid user <*> from <IP> port <NUM>"


def test_different_messages_stay_apart():
    miner = TemplateMiner()
    messages = [
        "Health check passed",
        "Health check failed",
        "payment declined by issuer code=51",
        "cache miss for key user:42",
        "Connection pool exhausted: 50 of 50 connections in use",
        "Connection to 10.0.0.5:5432 refused",
    ]
    ids = [miner.add(m)[0] for m in messages]
    assert len(set(ids)) == len(messages)
    assert miner.add("Health check failed")[0] == ids[1]


def test_ids_are_stable_while_templates_generalise():
    miner = TemplateMiner()
    tid, text = miner.add("user 17 logged in from 10.1.1.1 via sso")
    assert tid == "T1" and text == "user <NUM> logged in from <IP> via sso"
    other, _ = miner.add("disk /var/lib/db is 91% full")
    for i in range(20):
        assert miner.add(f"user {i} logged in from 10.1.1.{i} via password")[0] == tid
    assert miner.template(tid) == "user <NUM> logged in from <IP> via <*>"
    assert miner.templates() == {tid: "user <NUM> logged in from <IP> via <*>", other: miner.template(other)}
    with pytest.raises(KeyError):
        miner.template("T999")
    with pytest.raises(KeyError):
        miner.template("nope")


def test_same_input_gives_same_templates():
    messages = [f"job {i % 7} finished in {i}ms with status {'ok' if i % 3 else 'error'}" for i in range(200)]
    runs = []
    for _ in range(2):
        miner = TemplateMiner()
        runs.append(([miner.add(m) for m in messages], miner.templates()))
    assert runs[0] == runs[1]


def test_multiline_entry_is_mined_on_its_headline_and_last_line():
    miner = TemplateMiner()
    trace = (
        "handler crashed\nTraceback (most recent call last):\n"
        '  File "a.py", line {n}, in f\n    x = d["sku"]\nKeyError: \'sku\'\n'
    )
    tid, text = miner.add(trace.format(n=3))
    assert text == "handler crashed ... KeyError: 'sku'"
    assert miner.add(trace.format(n=99))[0] == tid


def test_template_count_is_bounded():
    miner = TemplateMiner(max_templates=5)
    for i in range(40):
        miner.add(f"{'word' * (i + 1)} happened")
    assert len(miner.templates()) == 5
    assert miner.add("x" * 100_000)[1] == "x" * 2048


def test_quiet_no_output_logs_or_warnings(capsys, caplog):
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        miner = TemplateMiner()
        for i in range(100):
            miner.add(f"request {i} served in {i}ms")
    assert capsys.readouterr() == ("", "")
    assert not [r for r in caplog.records if r.name.startswith("drain3") and r.levelno < logging.WARNING]


def _bench():
    spec = importlib.util.spec_from_file_location("loghub_ga", REPO_ROOT / "bench" / "loghub_ga.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_grouping_accuracy_metric():
    ga = _bench().grouping_accuracy
    assert ga(["a", "a", "b"], ["x", "x", "y"]) == 1.0
    assert ga(["a", "a", "a"], ["x", "x", "y"]) == 0.0
    assert ga(["a", "b", "c", "c"], ["x", "x", "y", "y"]) == 0.5


def test_grouping_accuracy_on_loghub_hdfs():
    bench = _bench()
    data = LOGHUB or bench.DEFAULT_DATA
    if not data.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Loghub-2k data is required under CI: {data} is missing")
        pytest.skip(f"Loghub-2k data not found at {data}")
    messages, truth = bench.load(data, "HDFS")
    miner = TemplateMiner()
    ga = bench.grouping_accuracy([miner.add(m)[0] for m in messages], truth)
    assert ga >= 0.95
