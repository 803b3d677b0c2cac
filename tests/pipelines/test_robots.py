"""robots.txt opt-out: the latest file of each host decides, a disallow to any listed AI agent drops the
page, and over the sample's hosts the drops are exactly those Python's own robots.txt parser finds."""

from __future__ import annotations

import json
import urllib.robotparser

import pyarrow.parquet as pq
import pytest
from datatrove.data import Document

from pipelines import fields, reasons
from pipelines.robots import (
    AI_AGENTS,
    ROBOTS_RECORD,
    RobotsConfig,
    RobotsOptOutFilter,
    latest_robots,
    robots_blocks,
    write_sample_robots,
)
from records.erasure_match import url_host
from records.hashing import sha256_file


def _write(root, host, date, text):
    path = root / host / f"{date}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def robots_dir(tmp_path):
    root = tmp_path / "robots"
    _write(root, "a.org", "2024-01-01", "User-agent: *\nAllow: /\n")
    _write(root, "a.org", "2025-01-10", "User-agent: GPTBot\nDisallow: /private/\nAllow: /private/ok\n")
    _write(root, "b.org", "2025-01-10", "User-agent: Googlebot\nDisallow: /\n")
    _write(root, "c.org", "2025-02-01", "User-agent: *\nDisallow: /news/\n")
    return root


def test_latest_file_on_or_before_the_curation_date(robots_dir):
    latest = latest_robots(robots_dir)
    assert {h: e["date"] for h, e in latest.items()} == {
        "a.org": "2025-01-10",
        "b.org": "2025-01-10",
        "c.org": "2025-02-01",
    }
    assert latest["a.org"]["sha256"] == sha256_file(robots_dir / "a.org" / "2025-01-10.txt")
    earlier = latest_robots(robots_dir, as_of="2025-01-31")
    assert {h: e["date"] for h, e in earlier.items()} == {"a.org": "2025-01-10", "b.org": "2025-01-10"}


def test_a_misnamed_file_is_named(robots_dir):
    (robots_dir / "a.org" / "robots.txt").write_text("User-agent: *\n")
    with pytest.raises(ValueError, match=r"a\.org/robots\.txt: robots files are named"):
        robots_blocks(robots_dir, robots_dir.parent)


def test_decisions_follow_the_rules_and_name_agent_file_and_rule(robots_dir):
    block = RobotsOptOutFilter(robots_dir)
    dropped = {
        url: block.decision(url)
        for url in (
            "https://a.org/private/x",  # GPTBot disallowed
            "https://a.org/private/ok",  # the longer Allow wins
            "https://a.org/public",
            "https://WWW.b.org/",  # no file for www.b.org: robots.txt is per host
            "https://b.org/x",  # only Googlebot, not an AI agent
            "https://c.org/news/1",  # "*" applies to every AI agent
            "https://c.org/blog/1",
            "https://d.org/anything",  # no robots file
            None,
        )
    }
    assert {u for u, d in dropped.items() if d} == {"https://a.org/private/x", "https://c.org/news/1"}
    a = dropped["https://a.org/private/x"]
    assert a == {
        "agent": "GPTBot",
        "robots_file": "a.org/2025-01-10.txt",
        "robots_sha256": sha256_file(robots_dir / "a.org" / "2025-01-10.txt"),
        "robots_date": "2025-01-10",
        "rule": "User-agent: gptbot / Disallow: /private/",
    }
    assert dropped["https://c.org/news/1"]["agent"] == AI_AGENTS[0]
    assert dropped["https://c.org/news/1"]["rule"] == "User-agent: * / Disallow: /news/"
    only_ccbot = RobotsOptOutFilter(robots_dir, RobotsConfig(agents=("CCBot",)))
    assert only_ccbot.decision("https://a.org/private/x") is None  # only the listed agents count
    assert only_ccbot.decision("https://c.org/news/1")["agent"] == "CCBot"


def test_before_the_opt_out_date_nothing_is_dropped(robots_dir):
    block = RobotsOptOutFilter(robots_dir, RobotsConfig(as_of="2024-12-31"))
    assert block.decision("https://a.org/private/x") is None
    assert RobotsOptOutFilter(robots_dir, RobotsConfig(as_of="2025-01-10")).decision(
        "https://a.org/private/x"
    )


def test_a_small_host_cache_gives_the_same_decisions(robots_dir):
    urls = [
        "https://a.org/private/x",
        "https://c.org/news/1",
        "https://b.org/x",
        "https://a.org/private/y",
    ] * 3
    wide, narrow = RobotsOptOutFilter(robots_dir), RobotsOptOutFilter(robots_dir, cache_hosts=1)
    assert [narrow.decision(u) for u in urls] == [wide.decision(u) for u in urls]
    assert len(narrow._cache) == 1


def test_sample_robots_drop_exactly_what_the_reference_parser_disallows(curated, tmp_path):
    """Over the curated sample's URLs and robots files drawn for its hosts, the filter drops exactly
    the pages urllib.robotparser (an independent implementation) finds disallowed to an AI agent."""
    layout, results, _ = curated
    rows = pq.read_table(results[0].folder / "index.parquet", columns=["doc_id", "url", "sha256"]).to_pylist()
    hosts = {url_host(r["url"]) for r in rows if r["url"]}
    robots = tmp_path / "robots"
    written = write_sample_robots(robots, hosts, seed=5)
    assert len(written) == 2 * len(hosts) and write_sample_robots(tmp_path / "again", hosts, seed=5)
    assert all(
        (robots / p.relative_to(robots)).read_bytes()
        == (tmp_path / "again" / p.relative_to(robots)).read_bytes()
        for p in written
    )

    parsers = {}
    for host in hosts:
        parser = urllib.robotparser.RobotFileParser()
        parser.parse((robots / host / "2025-01-15.txt").read_text().splitlines())
        parsers[host] = parser
    expected = {
        r["doc_id"]
        for r in rows
        if r["url"] and any(not parsers[url_host(r["url"])].can_fetch(agent, r["url"]) for agent in AI_AGENTS)
    }
    assert 0 < len(expected) < len(rows)

    staging = tmp_path / "staging"
    staging.mkdir()
    [block] = robots_blocks(robots, staging)
    docs = [
        Document(text="x", id=r["doc_id"], metadata={fields.URL: r["url"], fields.SHA256: r["sha256"]})
        for r in rows
    ]
    kept = {d.id for d in block.run(iter(docs))}
    assert kept == {r["doc_id"] for r in rows} - expected
    excluded = [
        row for p in sorted((staging / "excluded").glob("*.parquet")) for row in pq.read_table(p).to_pylist()
    ]
    assert {r["id"] for r in excluded} == expected
    assert {r["filter_reason"] for r in excluded} == {reasons.OPTOUT_ROBOTS_TXT}
    for row in excluded:
        details = json.loads(row["filter_details"])
        host = url_host(row["url"])
        assert details["robots_file"] == f"{host}/2025-01-15.txt"
        assert details["robots_sha256"] == sha256_file(robots / details["robots_file"])
        assert not parsers[host].can_fetch(details["agent"], row["url"]) and details["rule"].startswith(
            "User-agent:"
        )
    record = json.loads((staging / ROBOTS_RECORD).read_text())
    assert set(record["files"]) == hosts and record["agents"] == list(AI_AGENTS)
