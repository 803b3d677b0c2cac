"""Rebuild ``sample/sources/`` from Debian packages: real, multilingual, openly licensed prose.

Run by hand, on a machine that reaches a Debian mirror (never by tests or the demo)::

    apt-get update
    python sample/build_sources.py [--work /tmp/apertus-sample-build]

End to end: ``apt-get download`` each package of ``SOURCES`` (the versions the mirror serves),
``dpkg-deb -x`` it, turn each document (one HTML page of a guide, or one man page rendered with
``groff -K utf8 -T utf8 -man``) into paragraphs, keep the paragraphs that are prose in the
document's language (fastText language id from ``resources/models``), drop template paragraphs
that repeat across documents (translator credits, colophons), take documents per language in a
fixed pseudo-random order (sha256 of the id) up to a character budget, and write
``sample/sources/<lang>.jsonl.gz`` (gzip mtime 0) and ``sample/SOURCES.json`` (package versions,
.deb hashes, licenses, output hashes and counts). Same package versions in, same bytes out.

Needs: ``apt-get``, ``dpkg-deb``, ``groff`` (Debian package ``groff-base`` suffices) and the
project's virtualenv (fastText).
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import hashlib
import html.parser
import io
import json
import re
import subprocess
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import fasttext

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "sample" / "sources"
LID_MODEL = next((REPO / "resources" / "models").glob("lid.176*.ftz"))

IG = "/usr/share/doc/installation-guide-amd64"
HIST = "/usr/share/doc/debian-history/docs"
REF = "/usr/share/debian-reference"


@dataclass(frozen=True)
class Source:
    """Documents of one language inside one package: ``kind`` "html" (paragraphs are <p>) or "man"."""

    language: str  # ISO 639-1
    package: str
    pattern: str  # fnmatch over the absolute path inside the package
    kind: str


def _ig(lang: str, folder: str) -> Source:
    return Source(lang, "installation-guide-amd64", f"{IG}/{folder}/*.html", "html")


def _man(lang: str, package: str, folder: str) -> Source:
    return Source(lang, package, f"/usr/share/man/{folder}/man*/*", "man")


def _ref(lang: str, suffix: str) -> Source:
    return Source(
        lang, f"debian-reference-{suffix}", f"{REF}/*.{lang if lang != 'zh' else 'zh-cn'}.html", "html"
    )


def _hist(lang: str) -> Source:
    return Source(lang, "debian-history", f"{HIST}/*.{lang}.html", "html")


SOURCES: tuple[Source, ...] = (
    _ig("en", "en"), _ref("en", "en"), _hist("en"),
    _ig("de", "de"), _ref("de", "de"), _hist("de"), _man("de", "manpages-de", "de"),
    _ig("fr", "fr"), _ref("fr", "fr"), _hist("fr"), _man("fr", "manpages-fr", "fr"),
    _ig("es", "es"), _ref("es", "es"), _hist("es"), _man("es", "manpages-es", "es"),
    _ig("it", "it"), _ref("it", "it"), _hist("it"), _man("it", "manpages-it", "it"),
    _ig("pt", "pt"), _ref("pt", "pt"), _hist("pt"), _man("pt", "manpages-pt-br", "pt_BR"),
    _ig("nl", "nl"), _man("nl", "manpages-nl", "nl"),
    _man("pl", "manpages-pl", "pl"),
    _ig("cs", "cs"), _man("cs", "manpages-cs", "cs"),
    _ig("sv", "sv"), _man("sv", "manpages-sv", "sv"),
    _ig("ro", "ro"), _ig("ca", "ca"), _ig("da", "da"), _ig("id", "id"), _ig("vi", "vi"),
    _ig("ru", "ru"), _hist("ru"), _man("ru", "manpages-ru", "ru"),
    _man("uk", "manpages-uk", "uk"),
    _ig("el", "el"), _man("el", "manpages-el", "el"),
    _ig("ja", "ja"), _ref("ja", "ja"), _hist("ja"),
    _ig("zh", "zh_CN"), _ref("zh", "zh-cn"), _man("zh", "manpages-zh", "zh_CN"),
    _ig("ko", "ko"), _hist("ko"), Source("ko", "debian-faq-ko", "/usr/share/doc/debian/FAQ/ko/*.html", "html"),
)  # fmt: skip

# Characters of text per language; scripts without spaces carry more per character.
BUDGET_CHARS = {"ja": 130_000, "zh": 130_000}
DEFAULT_BUDGET_CHARS = 320_000
CJK_LANGUAGES = {"ja", "zh"}
# A guide's sections are merged until a document has this many characters (a third for CJK).
SECTION_CHARS = 3000
MIN_LID_PROBABILITY = 0.7
# A paragraph whose first characters start paragraphs of this many documents is a template.
TEMPLATE_MIN_DOCUMENTS = 3
TEMPLATE_PREFIX_CHARS = 40

_CJK = r"\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef"
_CJK_GAP = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")
_SPACES = re.compile(r"\s+")
_OVERSTRIKE = re.compile(r".\x08")
_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, **kwargs)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_package(package: str, work: Path) -> tuple[Path, str, Path]:
    """Download ``package`` (the mirror's candidate version) and unpack it; returns (deb, version, root)."""
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        run(["apt-get", "download", package], cwd=debs)
        found = sorted(debs.glob(f"{package}_*.deb"))
    assert len(found) == 1, f"expected one .deb for {package}, found {found}"
    deb = found[0]
    version = run(["dpkg-deb", "-f", str(deb), "Version"], text=True).stdout.strip()
    root = work / "unpacked" / package
    if not root.exists():
        root.mkdir(parents=True)
        run(["dpkg-deb", "-x", str(deb), str(root)])
    return deb, version, root


def license_of(copyright_text: str) -> str:
    """The license named by a Debian copyright file: DEP-5 ``License:`` fields, else the GPL it cites."""
    if copyright_text.startswith("Format:"):
        names = sorted({m.strip() for m in re.findall(r"^License:\s*(.+)$", copyright_text, re.M)})
        return " AND ".join(f"({n})" if " or " in n else n for n in names)
    gpl = re.search(r"GNU (?:General Public License|GPL)[^.]*?version (\d)", copyright_text, re.S)
    if gpl:
        later = "any later version" in copyright_text or "or (at your option)" in copyright_text
        return f"GPL-{gpl.group(1)}{'+' if later else ''}"
    if "Permission is granted to make and distribute verbatim copies" in copyright_text:
        # The Debian FAQ's notice (the GNU manual permission notice): copy, modify, translate.
        return "permissive-notice (verbatim, modified and translated copies permitted)"
    raise ValueError("copyright file names no license this script recognizes; add a rule to license_of")


class _Paragraphs(html.parser.HTMLParser):
    """Collects the text of each <p> by section (a heading starts one), leaving out preformatted
    blocks, scripts and styles."""

    SKIP = {"pre", "script", "style"}
    HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[list[str]] = [[]]
        self._parts: list[str] | None = None
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in self.SKIP:
            self._skip_depth += 1
        elif tag == "p":
            self._flush()
            self._parts = []
        elif tag in self.HEADINGS:
            self._flush()
            if self.sections[-1]:
                self.sections.append([])

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in ("p", "div", "li", "td", "body"):
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._parts is not None and not self._skip_depth:
            self._parts.append(data)

    def _flush(self) -> None:
        if self._parts:
            self.sections[-1].append("".join(self._parts))
        self._parts = None


def html_sections(data: bytes) -> list[list[str]]:
    """The paragraphs of an HTML page, grouped by the headings above them."""
    parser = _Paragraphs()
    parser.feed(data.decode("utf-8"))
    parser.close()
    return parser.sections


def man_sections(data: bytes) -> list[list[str]]:
    """Render a roff man page and return its lines as one section; a very long line length makes
    each line a paragraph."""
    if gzip_magic(data):
        data = gzip.decompress(data)
    if data.lstrip().startswith(b".so "):
        return [[]]  # a link to another page
    rendered = subprocess.run(
        ["groff", "-K", "utf8", "-T", "utf8", "-man", "-rLL=4000n", "-P-cbou"],
        input=data,
        capture_output=True,
        timeout=60,
    ).stdout.decode("utf-8", errors="replace")
    rendered = _OVERSTRIKE.sub("", _ESCAPES.sub("", rendered))
    # Tagged options ("-c     text") and page headers keep runs of spaces inside the line: not prose.
    return [[line for line in rendered.splitlines() if not re.search(r"\S {3,}\S", line.strip())]]


def gzip_magic(data: bytes) -> bool:
    return data[:2] == b"\x1f\x8b"


def normalize(paragraph: str, language: str) -> str:
    text = unicodedata.normalize("NFC", paragraph.replace("\u00ad", ""))
    text = _SPACES.sub(" ", text).strip()
    if language in CJK_LANGUAGES:
        text = _CJK_GAP.sub("", text)
    return text


class ProseFilter:
    """Keeps paragraphs that read as prose in the expected language."""

    def __init__(self) -> None:
        self.model = fasttext.load_model(str(LID_MODEL))

    def language(self, text: str) -> tuple[str, float]:
        # The C++ binding: fastText's Python predict() breaks under numpy 2.
        ((probability, label),) = self.model.f.predict(text, 1, 0.0, "strict")
        return label.removeprefix("__label__"), probability

    def keep(self, text: str, language: str) -> bool:
        if language in CJK_LANGUAGES:
            long_enough = len(text) >= 40
        else:
            long_enough = len(text.split()) >= 10 and len(text) >= 70
        if not long_enough or text.startswith(("-", "•", "*")):
            return False
        letters = sum(ch.isalpha() or ch.isspace() for ch in text)
        if letters / len(text) < 0.85:  # commands, paths, tables
            return False
        label, probability = self.language(text)
        return label == language and probability >= MIN_LID_PROBABILITY


def candidates(source: Source, root: Path) -> list[str]:
    """Absolute in-package paths of the source's documents, sorted."""
    found = []
    for path in root.rglob("*"):
        inside = "/" + path.relative_to(root).as_posix()
        if path.is_file() and not path.is_symlink() and fnmatch.fnmatch(inside, source.pattern):
            found.append(inside)
    return sorted(found)


def drop_templates(documents: list[dict]) -> None:
    """Remove paragraphs whose opening repeats across documents (credits, colophons, license notes)."""
    seen = Counter()
    for document in documents:
        seen.update({p[:TEMPLATE_PREFIX_CHARS] for p in document["paragraphs"]})
    for document in documents:
        document["paragraphs"] = [
            p for p in document["paragraphs"] if seen[p[:TEMPLATE_PREFIX_CHARS]] < TEMPLATE_MIN_DOCUMENTS
        ]


def build_language(language: str, sources: list[Source], packages: dict, prose: ProseFilter) -> list[dict]:
    """The language's documents, in id-hash order, up to its budget; each with paragraphs kept."""
    budget = BUDGET_CHARS.get(language, DEFAULT_BUDGET_CHARS)
    queue = []
    for source in sources:
        root = packages[source.package]["root"]
        for inside in candidates(source, root):
            file_id = f"{source.package}:{inside}"
            queue.append((hashlib.sha256(file_id.encode()).hexdigest(), file_id, source, inside))
    queue.sort()
    section_chars = SECTION_CHARS // 3 if language in CJK_LANGUAGES else SECTION_CHARS
    documents, total, seen = [], 0, set()
    # Extract 1.5x the budget, then remove templates (which needs many documents), then trim.
    for _, file_id, source, inside in queue:
        if total >= budget * 1.5:
            break
        data = (packages[source.package]["root"] / inside.lstrip("/")).read_bytes()
        sections = html_sections(data) if source.kind == "html" else man_sections(data)
        # Long guides become one document per run of sections of at least SECTION_CHARS.
        paragraphs, first = [], 0
        for number, section in enumerate(sections):
            for paragraph in section:
                text = normalize(paragraph, language)
                # A paragraph repeated anywhere in the language would make clean pages overlap.
                if text and text not in seen and prose.keep(text, language):
                    seen.add(text)
                    paragraphs.append(text)
            chars = sum(map(len, paragraphs))
            if paragraphs and (chars >= section_chars or number == len(sections) - 1):
                doc_id = file_id if len(sections) == 1 else f"{file_id}#{first}-{number}"
                documents.append({"id": doc_id, "source": source, "path": inside, "paragraphs": paragraphs})
                total += chars
                paragraphs, first = [], number + 1
    drop_templates(documents)
    kept, total = [], 0
    min_chars = 200 if language in CJK_LANGUAGES else 400
    for document in documents:
        chars = sum(map(len, document["paragraphs"]))
        if chars < min_chars or len(document["paragraphs"]) < 2:
            continue  # too short to cut a web page from
        if total >= budget:
            break
        kept.append(document)
        total += chars
    return kept


def write_language(language: str, documents: list[dict], packages: dict) -> dict:
    """Write ``<lang>.jsonl.gz`` deterministically; returns its SOURCES.json entry."""
    lines = []
    for document in documents:
        package = document["source"].package
        record = {
            "id": document["id"],
            "language": language,
            "package": package,
            "package_version": packages[package]["version"],
            "path": document["path"],
            "text": "\n\n".join(document["paragraphs"]),
        }
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    raw = "".join(lines).encode("utf-8")
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    out = OUT_DIR / f"{language}.jsonl.gz"
    out.write_bytes(buffer.getvalue())
    return {
        "file": f"sources/{out.name}",
        "sha256": sha256_file(out),
        "language": language,
        "num_documents": len(documents),
        "num_characters": sum(len(json.loads(line)["text"]) for line in lines),
        "num_bytes_uncompressed": len(raw),
        "packages": sorted({d["source"].package for d in documents}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/apertus-sample-build"))
    args = parser.parse_args()

    packages = {}
    for package in sorted({s.package for s in SOURCES}):
        deb, version, root = fetch_package(package, args.work)
        copyright_file = next(root.glob("usr/share/doc/*/copyright"))
        packages[package] = {
            "name": package,
            "version": version,
            "deb": deb.name,
            "deb_sha256": sha256_file(deb),
            "license": license_of(copyright_file.read_text(encoding="utf-8")),
            "copyright_file": "/" + copyright_file.relative_to(root).as_posix(),
            "root": root,
        }
        print(f"{package} {version}: {packages[package]['license']}", flush=True)

    prose = ProseFilter()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    outputs = []
    for language in sorted({s.language for s in SOURCES}):
        documents = build_language(language, [s for s in SOURCES if s.language == language], packages, prose)
        outputs.append(write_language(language, documents, packages))
        print(
            f"{language}: {outputs[-1]['num_documents']} documents, {outputs[-1]['num_characters']} chars",
            flush=True,
        )

    used = {p for o in outputs for p in o["packages"]}
    release = re.search(r"^VERSION_CODENAME=(\S+)$", Path("/etc/os-release").read_text(), re.M)
    manifest = {
        "description": "Real multilingual prose from Debian packages; rebuilt by sample/build_sources.py.",
        "debian_release": release.group(1) if release else None,
        "language_id_model": LID_MODEL.name,
        "packages": [{k: v for k, v in packages[p].items() if k != "root"} for p in sorted(used)],
        "outputs": outputs,
    }
    (REPO / "sample" / "SOURCES.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
