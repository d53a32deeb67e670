"""The Drain3 template miner: masking, grouping, stable ids, bounds, and grouping accuracy on Loghub HDFS."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import re
import warnings
from pathlib import Path

import pytest

from analysis.templates import DEFAULT_MASKS, TemplateMiner

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
        ("took 12ms then 3.5s, 1h2m3s total", "took <DUR> then <DUR> total"),  # a list is one value
        ("wrote 200MB of 1.5GiB", "wrote <SIZE> of <SIZE>"),
        ("retries=3 ratio=0.75 delta -42 at 85%", "retries=<NUM> ratio=<NUM> delta <NUM> at <NUM>%"),
        ('query failed q="select * from t where id = 1"', "query failed q=<STR>"),
        ("mail bob.smith+x@example.co.uk now", "mail <EMAIL> now"),
        ("GET https://api.example.com/v1/orders/12?x=1 500", "GET <URL> <NUM>"),
        ("GET /api/orders/8812/items", "GET <PATH>"),
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
    assert TemplateMiner(extra_masks=[(r"core\.\d+", "*")], masks=()).mask("core.12 at 3") == (
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


def loghub() -> Path:
    """The Loghub-2k samples: required under CI, else the test is skipped without them."""
    data = LOGHUB or _bench().DEFAULT_DATA
    if not data.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Loghub-2k data is required under CI: {data} is missing")
        pytest.skip(f"Loghub-2k data not found at {data}")
    return data


def test_grouping_accuracy_on_loghub_hdfs():
    bench = _bench()
    messages, truth = bench.load(loghub(), "HDFS")
    miner = TemplateMiner()
    ga = bench.grouping_accuracy([miner.add(m)[0] for m in messages], truth)
    assert ga >= 0.95


@pytest.mark.parametrize(
    ("message", "masked"),
    [
        ("Resolved MSRA-SA-39.fareast.corp.microsoft.com to /default-rack", "Resolved <HOST> to /default-rack"),
        ("connect to db-01.prod.internal:5432 failed", "connect to <HOST> failed"),
        ("chrome.exe - www.google.com:443 open through proxy proxy.cse.cuhk.edu.hk:5070 HTTPS",
         "<FILE> - <HOST> open through proxy <HOST> HTTPS"),
        ("redis-master.cache:6379 down", "<HOST> down"),
        ("opened /var/lib/app/data/segment-0042.log for append", "opened <PATH> for append"),
        ("Loaded Servicing Stack v6.1.7601.23505 with Core: C:\\Windows\\winsxs\\cbscore.dll",
         "Loaded Servicing Stack <VER> with Core: <PATH>"),
        ("upgraded to 2.4.1-rc.2 from v2.3.9", "upgraded to <VER> from <VER>"),
        ("reading core-site.xml", "reading <FILE>"),
        ("connection from 84.139.180.144 at Sat Jul  2 03:04:05 2005", "connection from <IP> at <TS>"),
        ("peers 10.0.0.1, 10.0.0.2, 10.0.0.3 joined", "peers <IP> joined"),
        ("org.apache.hadoop.mapreduce.MRJobConfig read", "org.apache.hadoop.mapreduce.MRJobConfig read"),
        ("mapred.task.id is deprecated", "mapred.task.id is deprecated"),
    ],
)
def test_host_names_paths_files_versions_and_dates_are_masked(message, masked):
    assert TemplateMiner().mask(message) == masked


def test_no_mask_tells_one_digit_from_another():
    # The summary caches masked text by the shape of a line (digits as 0), so no mask may look at digit values.
    for regex, name, _ in DEFAULT_MASKS:
        source = re.sub(r"\{\d+(,\d*)?\}|\\d|0-9|0\[xX\]", "", regex)
        assert not re.search(r"\d", source), f"mask {name} tells digits apart: {regex}"


def test_host_names_up_front_do_not_make_every_line_a_template():
    programs = ["chrome.exe", "firefox.exe", "Dropbox.exe", "svchost.exe *64", "QQ.exe"]
    hosts = ["www.google.com:443", "api.dropbox.com:443", "img.example.co.uk:80", "cdn.shop.example.net:8080"]
    miner = TemplateMiner()
    ids = {
        miner.add(f"{program} - {host} open through proxy proxy.cse.cuhk.edu.hk:5070 HTTPS")[0]
        for program in programs
        for host in hosts
    }
    assert len(ids) == 1


def test_messages_of_varying_length_share_a_template():
    miner = TemplateMiner()
    names = ["an14 an15 an16", "an14 an15 an16 an17 an18 an19", "an3", "an14 an15"]
    ids = {miner.add(f"Warning: we failed to resolve data source name {n}")[0] for n in names}
    assert len(ids) == 1
    lists = {miner.add("peers " + ", ".join(f"10.0.0.{i}" for i in range(n)) + " left the ring")[0] for n in (1, 3, 7)}
    assert len(lists) == 1
    assert miner.add("Failed password for root from 10.0.0.1 port 22 ssh2")[0] != miner.add(
        "Failed password for invalid user admin from 10.0.0.1 port 22 ssh2"
    )[0], "an extra constant word is another event"


def test_miner_settings_are_the_leave_one_out_choice():
    """TemplateMiner's defaults are the settings `bench.loghub_ga --loo` chooses on all eight systems."""
    bench = _bench()
    chosen = {"sim_th": 0.75, "depth": 5, "masks": "all", "masks_in_tree": True, "collapse_runs": True,
              "join_lengths": True}
    assert chosen in bench.settings_grid()
    defaults = inspect.signature(TemplateMiner).parameters
    assert {k: defaults[k].default for k in chosen if k != "masks"} == {k: v for k, v in chosen.items() if k != "masks"}
    assert defaults["masks"].default is DEFAULT_MASKS


def test_leave_one_out_chooses_on_the_others(tmp_path):
    data = loghub()
    for system in ("HDFS", "OpenSSH", "Zookeeper"):
        (tmp_path / system).mkdir()
        rows = (data / system / f"{system}_2k.log_structured.csv").read_text().splitlines(keepends=True)[:301]
        (tmp_path / system / f"{system}_2k.log_structured.csv").write_text("".join(rows))
    bench = _bench()
    grid = [s for s in bench.settings_grid() if s["depth"] == 5 and s["sim_th"] in (0.5, 0.75)]
    result = bench.leave_one_out(tmp_path, ["HDFS", "OpenSSH", "Zookeeper"], grid)
    assert [f["held_out"] for f in result["folds"]] == ["HDFS", "OpenSSH", "Zookeeper"]
    for fold in result["folds"]:
        others = [s for s in ("HDFS", "OpenSSH", "Zookeeper") if s != fold["held_out"]]
        assert fold["settings"] in grid and 0 < fold["ga"] <= 1 and others
    assert result["settings_tried"] == len(grid)
