"""robots.txt opt-out: a page whose site reserves it from AI crawlers is left out, retroactively.

As the published Apertus corpus did, the decision uses the robots.txt of the page's host as it
stands at curation time, not as it stood when the page was crawled: a site that opted out later
is honoured for pages crawled before. A document is dropped when the latest robots.txt of its host
(on or before ``RobotsConfig.as_of``) disallows its URL to any agent of ``RobotsConfig.agents``
(``AI_AGENTS`` by default); a ``User-agent: *`` group applies to an agent no group names, as
robots.txt has it (RFC 9309). Parsing and matching are protego's.

Layout: ``<data>/robots/<host>/<YYYY-MM-DD>.txt``, one file per host and date it was fetched (the
host lower-cased, without port). Hosts without a file keep all their pages. The files a step used
are listed with their sha256 in the version's ``robots.json``, so a new robots.txt gives the step a
new version id, and each exclusion row names the agent, the file, its sha256, its date and the rule.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from protego import Protego

from pipelines import fields, reasons
from pipelines.shards import DocumentShardWriter
from records.canonical import write_record
from records.documents import EXCLUDED, ROBOTS_RECORD
from records.erasure_match import url_host
from records.hashing import sha256_file

_DATED = re.compile(r"^(\d{4}-\d{2}-\d{2})\.txt$")

# User agents of crawlers that collect training data for AI models, or fetch pages for an AI
# assistant, as site owners name them in robots.txt. A page disallowed to any of them is left out.
AI_AGENTS = (
    "GPTBot",  # OpenAI, training
    "ChatGPT-User",  # OpenAI, fetches for ChatGPT users
    "OAI-SearchBot",  # OpenAI, search
    "CCBot",  # Common Crawl, whose dumps feed most open corpora
    "Google-Extended",  # Google's token for Gemini training (not a crawler of its own)
    "Applebot-Extended",  # Apple's token for training (likewise)
    "anthropic-ai",  # Anthropic
    "ClaudeBot",  # Anthropic
    "Claude-Web",  # Anthropic
    "PerplexityBot",  # Perplexity
    "Bytespider",  # ByteDance
    "cohere-ai",  # Cohere
    "Amazonbot",  # Amazon
    "Meta-ExternalAgent",  # Meta, training
    "FacebookBot",  # Meta, training of speech and language models
    "omgili",  # Webz.io, datasets sold for training
    "omgilibot",  # Webz.io
    "Diffbot",  # Diffbot, knowledge graph and training data
    "ImagesiftBot",  # ImageSift
    "Timpibot",  # Timpi
    "YouBot",  # You.com
    "AI2Bot",  # Allen Institute for AI
)


@dataclass(frozen=True)
class RobotsConfig:
    """agents: the user agents a disallow for which leaves a page out. as_of: the curation date
    (YYYY-MM-DD); files dated after it are not used; None uses each host's latest file."""

    agents: tuple[str, ...] = AI_AGENTS
    as_of: str | None = None


def robots_file(robots_dir: Path, host: str, as_of: str | None = None) -> dict | None:
    """The latest robots.txt of ``host`` on or before ``as_of``: {"path" (relative to ``robots_dir``),
    "date", "sha256", "text"}; None when the host has none."""
    folder = Path(robots_dir) / host
    if not folder.is_dir():
        return None
    dated = sorted(
        (m.group(1), p)
        for p in folder.iterdir()
        if (m := _DATED.match(p.name)) and (as_of is None or m.group(1) <= as_of)
    )
    if not dated:
        return None
    date, path = dated[-1]
    text = path.read_text(encoding="utf-8", errors="replace")
    return {"path": f"{host}/{path.name}", "date": date, "sha256": sha256_file(path), "text": text}


def latest_robots(robots_dir: Path, as_of: str | None = None) -> dict[str, dict]:
    """Per host, what ``robots_file`` gives, without the text: the files a curation on ``as_of``
    uses. ValueError naming a file that is not ``<host>/<YYYY-MM-DD>.txt``. Streams the folder;
    holds one entry per host (call it once per step, not per document)."""
    robots_dir = Path(robots_dir)
    found: dict[str, dict] = {}
    if not robots_dir.is_dir():
        return found
    for path in sorted(p for p in robots_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(robots_dir)
        match = _DATED.match(path.name)
        if len(rel.parts) != 2 or match is None or rel.parts[0] != rel.parts[0].lower():
            raise ValueError(
                f"{path}: robots files are named <host, lower case>/<YYYY-MM-DD>.txt under {robots_dir}"
            )
        host, date = rel.parts[0], match.group(1)
        if (as_of is None or date <= as_of) and (host not in found or date > found[host]["date"]):
            found[host] = {"path": rel.as_posix(), "date": date}
    for entry in found.values():
        entry["sha256"] = sha256_file(robots_dir / entry["path"])
    return found


def _deciding_rule(parser: Protego, url: str, agent: str) -> str | None:
    """The Disallow rule that keeps ``agent`` from ``url`` (as protego ranks rules), or None."""
    from protego._utils import _quote_path

    rule_set = parser._get_matching_rule_set(agent)
    if rule_set is None:
        return None
    path = _quote_path(url)
    for rule in rule_set._rules:
        if rule.value.match(path):
            return f"User-agent: {rule_set.user_agent} / Disallow: {rule.value._pattern}"
    return None


class RobotsOptOutFilter(BaseFilter):
    """Drops documents whose URL the host's robots.txt disallows to any listed AI agent. Reads a
    host's file when a document of it first comes by and keeps the last ``cache_hosts`` parsed, so
    memory does not grow with the number of hosts."""

    name = "🤖 robots.txt opt-out"

    def __init__(
        self,
        robots_dir: Path | str,
        config: RobotsConfig = RobotsConfig(),
        exclusion_writer: DiskWriter | None = None,
        cache_hosts: int = 4096,
    ):
        super().__init__(exclusion_writer)
        self.robots_dir = str(robots_dir)
        self.config = config
        self.cache_hosts = cache_hosts
        self._cache: dict[str, tuple[dict, Protego] | None] = {}

    def _host(self, host: str) -> tuple[dict, Protego] | None:
        if host in self._cache:
            self._cache[host] = self._cache.pop(host)  # most recently used last
            return self._cache[host]
        entry = robots_file(Path(self.robots_dir), host, self.config.as_of)
        value = (entry, Protego.parse(entry["text"])) if entry else None
        if len(self._cache) >= self.cache_hosts:
            del self._cache[next(iter(self._cache))]
        self._cache[host] = value
        return value

    def decision(self, url: str | None) -> dict | None:
        """None when ``url`` may be used; else the details of the opt-out: agent, file, sha256, rule."""
        host = url_host(url)
        found = self._host(host) if host else None
        if found is None:
            return None
        entry, parser = found
        for agent in self.config.agents:
            if not parser.can_fetch(url, agent):
                return {
                    "agent": agent,
                    "robots_file": entry["path"],
                    "robots_sha256": entry["sha256"],
                    "robots_date": entry["date"],
                    "rule": _deciding_rule(parser, url, agent),
                }
        return None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        details = self.decision(doc.metadata.get(fields.URL))
        if details is None:
            return True
        doc.metadata[fields.FILTER_DETAILS] = details
        return False, reasons.OPTOUT_ROBOTS_TXT


def robots_blocks(
    robots_dir: Path, staging: Path, config: RobotsConfig = RobotsConfig()
) -> list[RobotsOptOutFilter]:
    """The opt-out filter over the robots files in ``robots_dir``, writing its exclusions into
    ``staging``, and the staging's ``robots.json`` (as_of, agents, the files used with their
    sha256); nothing when there are no robots files."""
    files = latest_robots(robots_dir, config.as_of)
    if not files:
        return []
    record = {"as_of": config.as_of, "agents": list(config.agents), "files": dict(sorted(files.items()))}
    write_record(staging / ROBOTS_RECORD, record)
    writer = DocumentShardWriter(staging / EXCLUDED, output_filename="robots-${rank}.parquet")
    return [RobotsOptOutFilter(robots_dir, config, exclusion_writer=writer)]


# What write_sample_robots gives a host, by weight: most sites reserve nothing; some reserve a
# section or the whole site from one AI crawler, or from every crawler.
_SAMPLE_POLICIES = (
    (5, "User-agent: *\nAllow: /\n"),
    (2, "User-agent: *\nDisallow: /search\n\nUser-agent: GPTBot\nDisallow: /{section}/\n"),
    (1, "User-agent: CCBot\nDisallow: /\n\nUser-agent: *\nAllow: /\n"),
    (1, "User-agent: *\nDisallow: /{section}/\n"),
    (1, "User-agent: Googlebot\nDisallow: /\n"),  # not an AI agent: keeps every page
)


def write_sample_robots(
    robots_dir: Path,
    hosts: Iterable[str],
    seed: int = 0,
    sections: tuple[str, ...] = ("news", "blog", "wiki"),
) -> list[Path]:
    """Write two dated robots.txt files per host into ``robots_dir`` (``<host>/2024-06-01.txt``, allowing
    everything, and ``<host>/2025-01-15.txt`` with a policy drawn with ``seed``), for the demo and
    tests. Returns the files written. Deterministic: the same hosts and seed give the same files."""
    rng = random.Random(seed)
    policies = [text for weight, text in _SAMPLE_POLICIES for _ in range(weight)]
    written = []
    for host in sorted({h.lower() for h in hosts}):
        folder = Path(robots_dir) / host
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "2024-06-01.txt").write_text("User-agent: *\nAllow: /\n", encoding="utf-8")
        policy = rng.choice(policies).format(section=rng.choice(sections))
        (folder / "2025-01-15.txt").write_text(f"# {host}\n{policy}", encoding="utf-8")
        written += [folder / "2024-06-01.txt", folder / "2025-01-15.txt"]
    return written
