"""The docs site (mkdocs.yml, docs/) and the README that fronts it.

- ``mkdocs build --strict`` passes, offline (under ``unshare -n`` where the host allows it): a broken
  link or anchor, a missing API reference or a page left out of the nav fails it (mkdocs.yml
  ``validation``).
- The CLI reference page of each command lists every option its ``--help`` lists (the page is generated
  from the parser by docs/hooks/cli_reference.py; this checks the generation against the real console
  script), and the hook's command table covers every console script in pyproject.toml.
- Every example command in README.md and docs/*.md parses with that command's own parser, and every
  Python example compiles.
- README.md stays a front page (<= 200 lines) whose relative links resolve.
"""
from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
HOOK = DOCS / "hooks" / "cli_reference.py"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec(
    "mkdocstrings_handlers") is None, reason="the docs extra is not installed (pip install -e '.[docs]')")


@functools.cache
def _hook():
    """docs/hooks/cli_reference.py (a file of the docs, not a package module)."""
    spec = importlib.util.spec_from_file_location("msvit_docs_cli_reference", HOOK)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def _offline_prefix() -> list[str]:
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    return []


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    cmd = [*_offline_prefix(), sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
           str(ROOT / "mkdocs.yml"), "--site-dir", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, f"mkdocs build --strict failed:\n{r.stdout}\n{r.stderr}"
    return out


# ----------------------------------------------------------------------------- the build
def test_strict_build_passes_offline(site):
    assert (site / "index.html").is_file()
    for page in ("install", "export", "precision", "int8", "app", "predict", "screen", "explain", "bench",
                 "offline", "architecture", "limits", "cli", "api/runtime"):
        assert (site / page / "index.html").is_file(), page


def test_nothing_fetched_from_the_web():
    cfg = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"(?m)^\s+font: false", cfg), "material must not load Google Fonts"
    assert not re.search(r"(?m)^\s+- (social|privacy|optimize)\b", cfg)


def test_strict_build_fails_on_a_broken_link(tmp_path):
    """The validation settings really turn a broken link and an omitted page into a failure."""
    shutil.copytree(DOCS, tmp_path / "docs", ignore=shutil.ignore_patterns("api"))
    (tmp_path / "docs" / "api").mkdir()
    cfg = (ROOT / "mkdocs.yml").read_text()
    cfg = re.sub(r"  - API reference:\n(      - .*\n)+", "", cfg)
    cfg = re.sub(r"(?ms)^  - mkdocstrings:.*?(?=^markdown_extensions)", "", cfg)
    (tmp_path / "mkdocs.yml").write_text(cfg)
    (tmp_path / "docs" / "limits.md").write_text("# Known limits\n\n[gone](no-such-page.md)\n")
    (tmp_path / "docs" / "orphan.md").write_text("# not in the nav\n")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(tmp_path / "mkdocs.yml"),
                        "-d", str(tmp_path / "site")], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode != 0
    assert "no-such-page.md" in r.stderr and "orphan.md" in r.stderr, r.stderr


def test_api_reference_shows_the_public_faces(site):
    html = (site / "api" / "runtime" / "index.html").read_text()
    for name in ("msvit.runtime.load", "msvit.runtime.Session", "msvit.runtime.read_metadata"):
        assert f'id="{name}"' in html, name
    html = (site / "api" / "msvit" / "index.html").read_text()
    for name in ("msvit.Detector", "msvit.ms_eff_vit_b0", "msvit.preprocess.preprocess", "msvit.model.profile.profile"):
        assert f'id="{name}"' in html, name


# ----------------------------------------------------------------------------- the CLI reference
def test_command_table_covers_every_console_script():
    hook = _hook()
    assert sorted(c.name for c in hook.COMMANDS) == sorted(_scripts())


def _help_text(script: str, *sub: str) -> str:
    """What ``<script> [sub] --help`` prints, from the console script's own entry point."""
    module, func = _scripts()[script].split(":")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as e:
        getattr(importlib.import_module(module), func)([*sub, "--help"])
    assert e.value.code == 0
    return buf.getvalue()


def _listed_options(help_text: str, epilog: str | None) -> list[str]:
    """The option strings of the option lines of --help (the epilog's prose is not an option list)."""
    if epilog:
        help_text = help_text[: help_text.index(epilog.strip().splitlines()[0])]
    opts = []
    for line in help_text.splitlines():
        m = re.match(r"^  (-\S.*?)(?: {2,}|$)", line)  # option lines; help text wraps further in
        if m:
            opts += [part.split()[0] for part in m.group(1).split(", ")]
    return opts


@pytest.mark.parametrize("command", [c.name for c in _hook().COMMANDS])
def test_cli_page_lists_every_option_of_help(site, command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    hook = _hook()
    cmd = next(c for c in hook.COMMANDS if c.name == command)
    parser = cmd.build()
    opts = _listed_options(_help_text(command), parser.epilog)
    for name, sub in hook.subcommands(parser).items():  # msvit-web serve --help ...
        opts += _listed_options(_help_text(command, name), sub.epilog)
    assert len(set(opts)) >= 4 and "--help" in opts
    html = (site / "cli" / command / "index.html").read_text()
    tables = html.split('id="more-from-help"')[0]
    missing = [o for o in opts if not re.search(r"<code>[^<]*(?<![\w-])" + re.escape(o) + r"(?![\w-])", tables)]
    assert not missing, f"{command}: options of --help missing from its reference page: {missing}"
    assert parser.format_usage().split()[1] == command


# ----------------------------------------------------------------------------- examples in the docs
def _doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _blocks(text: str):
    """(language, body) of every fenced code block."""
    for m in re.finditer(r"(?ms)^```(\w*)[^\n]*\n(.*?)^```", text):
        yield m.group(1), m.group(2)


def _command_lines(body: str, names: tuple[str, ...]) -> list[str]:
    """The msvit command lines of a shell snippet (continuations joined, prompts, `&&` and `;` split)."""
    out = []
    for line in body.replace("\\\n", " ").splitlines():
        line = re.sub(r"^\$ ", "", line.strip())
        for part in re.split(r"\s*(?:&&|;)\s*", line):
            part = re.sub(r"^\.venv/bin/", "", part)
            if part.startswith(names):
                out.append(part)
    return out


def example_commands() -> list[tuple[str, str]]:
    """(where, command line) of every msvit command in a shell block of README.md and docs/*.md, of every
    inline code span there that is a command (the name and at least three arguments: `msvit-predict
    --json` is a flag's mention, `msvit-web serve DIR [--port N]` a synopsis), and of every line under 'examples:' in a command's --help (its CLI page)."""
    hook = _hook()
    names = tuple(c.name for c in hook.COMMANDS)
    out = []
    for f in _doc_files():
        text = f.read_text()
        for lang, body in _blocks(text):
            if lang in ("bash", "sh", "shell", "console", "text", ""):
                out += [(f.name, line) for line in _command_lines(body, names)]
        prose = re.sub(r"(?ms)^```.*?^```", "", text)
        for span in re.findall(r"`([^`\n]+)`", prose):
            if span.startswith(names) and len(span.split()) >= 4 and "[-" not in span:  # not a synopsis
                out.append((f.name, span))
    for c in hook.COMMANDS:
        for examples in re.findall(r"(?ms)^\s*examples:\n(.*?)(?:\n\s*\n|\Z)", c.build().epilog or ""):
            out += [(f"{c.name} --help", line) for line in _command_lines(examples, names)]
    return out


@pytest.mark.parametrize("where, line", example_commands())
def test_example_command_parses(where, line):
    hook = _hook()
    argv = shlex.split(line, comments=True)
    cmd = next(c for c in hook.COMMANDS if c.name == argv[0])
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            cmd.build().parse_args(argv[1:])
        except SystemExit as e:
            if e.code == 0:  # --help
                return
            pytest.fail(f"{where}: `{line}` does not parse ({e.code}): {err.getvalue().strip()}")


def test_examples_were_found():
    found = {line.split()[0] for _, line in example_commands()}
    assert found == {c.name for c in _hook().COMMANDS}, found


@pytest.mark.parametrize("path", _doc_files(), ids=lambda p: p.name)
def test_python_examples_compile(path):
    for lang, body in _blocks(path.read_text()):
        if lang == "python":
            ast.parse(body, filename=str(path))


# ----------------------------------------------------------------------------- the README
def test_readme_is_a_front_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    assert "mkdocs serve" in text
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [l for l in links if not re.match(r"[a-z]+://", l)]
    assert local, "the README links into the docs"
    broken = [l for l in local if not (ROOT / l).exists()]
    assert not broken, f"README links to missing files: {broken}"


def test_docstring_markup_becomes_markdown():
    spec = importlib.util.spec_from_file_location("msvit_docs_griffe_rst", DOCS / "hooks" / "griffe_rst.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = "Open it.\n\n>>> s = load(p)\n...     s.run(x)\n\nRaises :class:`~msvit.errors.ArtifactError`; ``x`` :func:`msvit.runtime.load`."
    assert mod.markdown(text) == ("Open it.\n\n\n```pycon\n>>> s = load(p)\n...     s.run(x)\n```\n\n\n"
                                  "Raises `ArtifactError`; `x` `msvit.runtime.load`.")
