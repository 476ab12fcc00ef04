"""The rendered book in a real browser, and the notebooks' readiness for Colab.

Browser tests (marker ``browser``; ``make browser``, part of ``make test``, runs them; ``make unit``
leaves them out): the built HTML book, whose folder is given in ``LIGHTFT_BOOK_HTML``, is served on
localhost and every page is opened in headless Debian Chromium (``/usr/bin/chromium``, or
``LIGHTFT_CHROMIUM``) through Playwright. Each page must load with no console error, no failed or
off-machine request (MathJax is vendored, so the book works offline), every image decoded, the
mathematics typeset by MathJax, every internal link pointing at a file (and anchor) that exists, the
hidden Colab install cell absent from the page, and each notebook page's Colab button pointing at a
committed ``book/<name>.ipynb``. Screenshots of three pages go to ``_build/screenshots/``.

Colab-readiness tests (no browser, run by ``make unit``): each notebook's first code cell is the hidden
install cell guarded by ``google.colab``, placed before any ``import lightft``; no notebook reads a
relative path that another notebook writes, or writes relative paths at all (so the chapters run on a
fresh kernel in any order, and never leave files in the repository).
"""

from __future__ import annotations

import ast
import functools
import html.parser
import http.server
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


# =========================================================================== Colab readiness (no browser)


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def _code_cells(ipynb: Path) -> list[str]:
    nb = nbformat.read(ipynb, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_installs_lightft_in_colab_only_and_is_hidden(ipynb: Path):
    nb = nbformat.read(ipynb, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{ipynb.name} has no code cell"
    first = code[0]
    assert "remove-cell" in first.metadata.get("tags", []), f"{ipynb.name}: the install cell must be tagged remove-cell"
    tree = ast.parse(first.source)
    guards = [n for n in ast.walk(tree) if isinstance(n, ast.If) and "google.colab" in ast.unparse(n.test)]
    assert guards, f"{ipynb.name}: the first code cell must install only under `if \"google.colab\" in sys.modules:`"
    guarded = "\n".join(ast.unparse(stmt) for g in guards for stmt in g.body)
    assert "pip" in guarded and "install" in guarded, f"{ipynb.name}: the guarded block must pip install"
    repository = _config()["repository"]["url"].rstrip("/")
    assert repository.split("github.com/")[-1] in guarded, \
        f"{ipynb.name}: the install cell must install lightft from {repository}"
    assert "import lightft" not in first.source.split("google.colab")[0], f"{ipynb.name}: lightft imported before install"


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.name)
def test_lightft_is_imported_only_after_the_install_cell(ipynb: Path):
    cells = _code_cells(ipynb)
    later = [i for i, src in enumerate(cells) if re.search(r"^\s*(import lightft|from lightft)", src, flags=re.M)]
    assert later, f"{ipynb.name} never imports lightft"
    assert min(later) >= 1 or "google.colab" in cells[0]


# What a notebook reads and writes, found in its code: calls whose argument is a path literal.
_READS = {"open", "read_csv", "read_json", "read_parquet", "read_text", "read_bytes", "load", "loadtxt",
          "load_file", "safe_open", "imread", "load_from_disk", "predict", "load_model", "load_tokenizer",
          "load_dataset", "from_pretrained", "read_labelled_file"}
_WRITES = {"savefig", "to_csv", "to_json", "to_parquet", "write_text", "write_bytes", "save", "savetxt",
           "save_file", "save_pretrained", "save_to_disk", "mkdir", "makedirs", "copy", "copyfile",
           "copytree", "save_as_distilbert"}
_PATHY = re.compile(r"^(\.{1,2}/|runs/|results/|outputs?/|checkpoints?/|data/)|\.(csv|jsonl?|txt|png|svg|pdf|npy|npz|"
                    r"pt|pth|bin|safetensors|parquet|pkl|pickle)$")


def _literal_paths(node: ast.AST) -> list[str]:
    """Path-like string literals in ``node``, except those joined onto a variable folder
    (``Path(scratch) / "result.json"``, ``f"{scratch}/run"``, ``os.path.join(scratch, "x.csv")``)."""
    if isinstance(node, ast.Constant):
        value = node.value.strip() if isinstance(node.value, str) else ""
        if value and "\n" not in value and not re.match(r"^[a-z]+://", value) and _PATHY.search(value):
            return [value]
        return []
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and not isinstance(node.left, ast.Constant):
        return _literal_paths(node.left)
    if isinstance(node, ast.JoinedStr) and node.values and not isinstance(node.values[0], ast.Constant):
        return []
    if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(("path.join", "Path")) and node.args \
            and not isinstance(node.args[0], ast.Constant):
        return []
    return [p for child in ast.iter_child_nodes(node) for p in _literal_paths(child)]


def _io_of(source: str) -> tuple[set[str], set[str]]:
    """(relative paths read, relative paths written) by the code of one notebook.

    A call's target is its first argument, the object a method is called on (``Path("x").read_text()``)
    and an ``output_dir=`` keyword; the CLI's ``--output``/``--model``/``--data`` in an argument list too.
    Absolute paths (``/proc/cpuinfo``, a ``tempfile`` folder) are not the repository's business.
    """
    reads, writes = set(), set()
    clean = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(clean)
    except SyntaxError:
        return reads, writes
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        name = func.rsplit(".", 1)[-1]
        mode = next((k.value for k in node.keywords if k.arg == "mode"), node.args[1] if len(node.args) > 1 else None)
        writing = name in _WRITES or (name == "open" and isinstance(mode, ast.Constant)
                                      and bool(set(str(mode.value)) & set("wax")))
        targets = node.args[:1] + ([node.func.value] if isinstance(node.func, ast.Attribute) else [])
        if writing or name in _READS:
            for target in targets:
                (writes if writing else reads).update(p for p in _literal_paths(target) if not p.startswith("/"))
        for k in node.keywords:  # output_dir="runs/x" in any call writes there
            if k.arg == "output_dir":
                writes.update(p for p in _literal_paths(k.value) if not p.startswith("/"))
        if func.endswith(("subprocess.run", "check_output", "check_call", "Popen")) and node.args:
            if isinstance(node.args[0], (ast.List, ast.Tuple)):  # the CLI: --output PATH writes, --model PATH reads
                items = [e.value if isinstance(e, ast.Constant) else None for e in node.args[0].elts]
                for flag, value in zip(items, items[1:]):
                    if isinstance(value, str) and not value.startswith("/"):
                        if flag == "--output":
                            writes.add(value)
                        elif flag in {"--model", "--data"} and _PATHY.search(value):
                            reads.add(value)
    return reads, writes


@functools.lru_cache(maxsize=None)
def _all_io() -> dict[str, tuple[set[str], set[str]]]:
    return {nb.name: _io_of("\n".join(_code_cells(nb))) for nb in NOTEBOOKS}


def test_there_are_notebooks():
    assert NOTEBOOKS, "no book/*.ipynb"


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_any_order_no_file_shared_with_another_notebook(ipynb: Path):
    io = _all_io()
    reads, writes = io[ipynb.name]
    assert not writes, (f"{ipynb.name} writes {sorted(writes)} relative to the book folder: write into a "
                        "tempfile.mkdtemp() folder instead, so that no notebook depends on another's files")
    others = {path: name for name, (_, w) in io.items() if name != ipynb.name for path in w}
    shared = {p: others[p] for p in reads if p in others}
    assert not shared, f"{ipynb.name} reads files that another notebook writes: {shared}"
    missing = sorted(p for p in reads if not (BOOK / p).exists() and not (ROOT / p).exists())
    assert not missing, f"{ipynb.name} reads {missing}, which no committed file provides"


def test_the_read_write_finder_finds_what_it_should():
    reads, writes = _io_of(
        "import pandas as pd\n"
        "df = pd.read_csv('runs/other/result.csv')\n"
        "plt.savefig('figure.png')\n"
        "lightft.finetune('minilm-l6', 'rotten_tomatoes', output_dir='runs/rt')\n"
        "p = lightft.predict('runs/rt', ['x'])\n"
        "with open('/proc/cpuinfo') as f: pass\n"
        "subprocess.run([sys.executable, '-m', 'lightft', 'finetune', '--output', 'runs/cli'])\n"
        "lightft.load_model('minilm-l6'); lightft.load_dataset('stanfordnlp/sst2')\n"
    )
    assert reads == {"runs/other/result.csv", "runs/rt"}
    assert writes == {"figure.png", "runs/rt", "runs/cli"}


# =========================================================================== the rendered book in Chromium


def _html_dir() -> Path:
    value = os.environ.get("LIGHTFT_BOOK_HTML")
    if not value:
        pytest.fail("LIGHTFT_BOOK_HTML is not set: run `make browser` (or `make test`), which builds the book "
                    "and points it at check-build/_build/html (make check-book)")
    path = Path(value).resolve()
    if not (path / "index.html").is_file():
        pytest.fail(f"LIGHTFT_BOOK_HTML={value}: no built book there (no index.html); build it with `make check-book`")
    return path


def _chromium() -> str:
    path = os.environ.get("LIGHTFT_CHROMIUM", "/usr/bin/chromium")
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"Chromium not found at {path}: install Debian's package (`apt-get install -y chromium`; "
                    "`make browser` does it) or set LIGHTFT_CHROMIUM")
    return path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request log on stderr
        pass


@pytest.fixture(scope="module")
def site():
    root = _html_dir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the Python package playwright is missing: pip install -r requirements.txt")
    profile = tmp_path_factory.mktemp("chromium-profile")  # a new, empty profile
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900}, offline=False,
        )
        try:
            yield context
        finally:
            context.close()


def _pages(root: Path) -> list[str]:
    pages = sorted(str(p.relative_to(root)) for p in root.rglob("*.html")
                   if not {"_static", "_sources", "_images", "vendor"} & set(p.relative_to(root).parts))
    return pages


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key) and (key == "id" or tag == "a"):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key) and not (tag == "link" and attrs.get("rel") in {"preconnect", "dns-prefetch"}):
                self.urls.append((tag, attrs[key]))


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def _committed(path: Path) -> bool:
    if not (ROOT / ".git").exists():
        return path.is_file()
    done = subprocess.run(["git", "ls-files", "--error-unmatch", str(path.relative_to(ROOT))], cwd=ROOT,
                          capture_output=True, text=True)
    return done.returncode == 0


_SCREENSHOT_DIR = Path(os.environ.get("LIGHTFT_SCREENSHOTS", ROOT / "_build" / "screenshots"))
_seen: dict[str, dict] = {}

_WAIT_FOR_PAGE = """async () => {
  for (const img of document.images) { img.loading = 'eager'; }
  await Promise.all([...document.images].map(img => img.decode().catch(() => null)));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  if (window.MathJax && MathJax.typesetPromise) { await MathJax.typesetPromise().catch(() => null); }
  return true;
}"""

_INSPECT = """() => ({
  images: [...document.images].map(img => ({src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0})),
  math: document.querySelectorAll('.math, span.math, div.math').length,
  typeset: document.querySelectorAll('mjx-container').length,
  mathjaxErrors: document.querySelectorAll('mjx-merror, .MathJax_Error').length,
  mathjax: !!(window.MathJax && MathJax.version),
  text: document.body.innerText,
  colab: [...document.querySelectorAll('a[href*="colab.research.google.com"]')].map(a => a.href),
})"""


def _visit(context, base: str, page_path: str) -> dict:
    if page_path in _seen:
        return _seen[page_path]
    page = context.new_page()
    problems: list[str] = []
    local = urlparse(base).netloc

    def on_route(route):
        if urlparse(route.request.url).netloc == local or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            problems.append(f"request leaves the machine: {route.request.url}")
            route.abort()

    page.route("**/*", on_route)
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url} ({req.failure})")
            if urlparse(req.url).netloc == local else None)
    page.on("response", lambda res: problems.append(f"HTTP {res.status}: {res.url}") if res.status >= 400 else None)
    page.goto(base + page_path, wait_until="load", timeout=60_000)
    source = (Path(os.environ["LIGHTFT_BOOK_HTML"]) / page_path).read_text(encoding="utf-8", errors="replace")
    redirect = re.search(r'http-equiv="Refresh" content="\d+;\s*url=([^"]+)"', source, flags=re.I)
    if redirect:  # index.html forwards to the first chapter: follow it, then inspect the target
        target = urljoin(base + page_path, redirect.group(1))
        page.wait_for_url(target, timeout=30_000)
        page.wait_for_load_state("load")
    page.evaluate(_WAIT_FOR_PAGE)
    page.wait_for_timeout(200)
    info = page.evaluate(_INSPECT)
    info["url"] = page.url
    info["problems"] = problems
    info["page"] = page
    _seen[page_path] = info
    return info


def _all_pages() -> list[str]:
    value = os.environ.get("LIGHTFT_BOOK_HTML")
    if value and (Path(value) / "index.html").is_file():
        return _pages(Path(value).resolve())
    return ["(no built book: set LIGHTFT_BOOK_HTML)"]


@pytest.mark.browser
def test_the_built_book_has_every_chapter_page(site):
    root, _ = site
    pages = _pages(root)
    assert "index.html" in pages
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = re.findall(r"file:\s*(\S+)", yaml.safe_dump(toc)) + [toc["root"]]
    missing = [f for f in files if f"{f}.html" not in pages]
    assert not missing, f"toc entries without a page: {missing}"


@pytest.mark.browser
@pytest.mark.parametrize("page_path", _all_pages())
def test_page_in_chromium(site, browser_context, page_path):
    root, base = site
    if not (root / page_path).is_file():
        pytest.fail(f"{page_path}: set LIGHTFT_BOOK_HTML to a built book")
    info = _visit(browser_context, base, page_path)
    assert not info["problems"], f"{page_path}:\n" + "\n".join(info["problems"])
    broken = [img["src"] for img in info["images"] if not img["ok"]]
    assert not broken, f"{page_path}: images that did not load: {broken}"
    if info["math"]:
        assert info["mathjax"], f"{page_path} has mathematics but MathJax did not load"
        assert info["typeset"] >= 1, f"{page_path}: {info['math']} math elements, none typeset by MathJax"
        assert info["mathjaxErrors"] == 0, f"{page_path}: MathJax could not typeset {info['mathjaxErrors']} formula(s)"
    assert "google.colab" not in info["text"], f"{page_path} shows the Colab install cell; tag it remove-cell"

    # internal links: every local href/src names an existing file, and an existing anchor
    parsed = _parse(root / page_path)
    bad = []
    for tag, url in parsed.urls:
        target = urljoin(base + page_path, url)
        parts = urlparse(target)
        if parts.scheme not in {"http", "https"} or parts.netloc != urlparse(base).netloc:
            continue
        file = root / unquote(parts.path.lstrip("/"))
        if file.is_dir():
            file = file / "index.html"
        if not file.is_file():
            bad.append(f"<{tag}> {url}: no file {file.relative_to(root) if file.is_relative_to(root) else file}")
        elif parts.fragment and file.suffix == ".html" and tag == "a":
            fragment = unquote(parts.fragment)
            if fragment not in _parse(file).ids:
                bad.append(f"<a> {url}: no anchor #{fragment} in {file.relative_to(root)}")
    assert not bad, f"{page_path}: broken internal links:\n" + "\n".join(bad)

    # Colab: each notebook page links its committed notebook; no page links another file
    repository = urlparse(_config()["repository"]["url"]).path.strip("/")
    branch = _config()["repository"].get("branch", "main")
    stem = Path(page_path).with_suffix("")
    notebook = ROOT / stem.with_suffix(".ipynb")
    for url in info["colab"]:
        prefix = f"https://colab.research.google.com/github/{repository}/blob/{branch}/"
        assert url.startswith(prefix) and url.endswith(".ipynb"), f"{page_path}: Colab link {url} is not a notebook"
        linked = ROOT / url[len(prefix):]
        assert linked.is_file() and _committed(linked), f"{page_path}: Colab link {url} names no committed notebook"
    if notebook.is_file():
        assert info["colab"], f"{page_path}: a notebook page without a Colab button"


@pytest.mark.browser
def test_screenshots_of_three_pages(site, browser_context):
    root, base = site
    pages = _pages(root)
    for page_path in pages:
        _visit(browser_context, base, page_path)
    chapters = [p for p in pages if p.startswith("book/")]
    most_math = max(chapters, key=lambda p: _seen[p]["typeset"])
    most_images = max((p for p in chapters if p != most_math), key=lambda p: len(_seen[p]["images"]))
    toc_root = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))["root"] + ".html"
    chosen = {toc_root: "landing", most_math: "most-math", most_images: "most-images"}
    if _SCREENSHOT_DIR.exists():
        shutil.rmtree(_SCREENSHOT_DIR)
    _SCREENSHOT_DIR.mkdir(parents=True)
    for page_path, why in chosen.items():
        page = _seen[page_path]["page"]
        if why != "landing":  # scroll to the first formula or figure, what the screenshot is meant to show
            page.evaluate("""(why) => { const el = why === 'most-math' ? document.querySelector('mjx-container[display]')
                || document.querySelector('mjx-container') : document.querySelector('article img');
                if (el) el.scrollIntoView({block: 'center'}); }""", why)
            page.wait_for_timeout(300)
        target = _SCREENSHOT_DIR / f"{why}-{Path(page_path).stem}.png"
        page.screenshot(path=str(target))
        assert target.stat().st_size > 10_000, f"{target} is suspiciously small"
