"""mkdocs hook: the CLI reference, one page per command, generated at build time from the command's own
argparse parser, so the docs and ``--help`` cannot disagree (tests/test_docs.py compares them).

A new command is one row in :data:`COMMANDS`; its page and its nav entry (under the nav item whose
page is ``cli/index.md``) follow. tests/test_docs.py checks that the table covers every console
script in pyproject.toml.
"""
from __future__ import annotations

import argparse
import html
import importlib
import re
from dataclasses import dataclass

INDEX = "cli/index.md"


@dataclass(frozen=True)
class Command:
    name: str     # the console script (pyproject.toml [project.scripts])
    parser: str   # "module:function" returning that script's argparse.ArgumentParser

    @property
    def page(self) -> str:
        return f"cli/{self.name}.md"

    def build(self) -> argparse.ArgumentParser:
        module, func = self.parser.split(":")
        return getattr(importlib.import_module(module), func)()


#: every msvit command, in the order the docs list them
COMMANDS: tuple[Command, ...] = (
    # served from the web layer for --target web (python -m msvit.export is the same without it)
    Command("msvit-export", "msvit.web.cli:export_parser"),
    Command("msvit-bench", "msvit.bench.cli:build_parser"),
    # the console script is served from the explain layer (for --explain); python -m msvit.predict is
    # the same command without --explain
    Command("msvit-predict", "msvit.explain.cli:build_predict_parser"),
    Command("msvit-explain", "msvit.explain.cli:build_parser"),
    Command("msvit-screen", "msvit.screen.cli:build_parser"),
    Command("msvit-web", "msvit.web.cli:build_parser"),
    Command("msvit-calibrate", "msvit.calibrate.cli:build_parser"),
)


# ----------------------------------------------------------------------------- rendering
_MD_SPECIAL = re.compile(r"([\\`*_\[\]])")


def _cell(text: str) -> str:
    """Plain text safe inside a Markdown table cell: HTML-escaped, Markdown specials escaped, no pipes."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(" ".join(text.split()))).replace("|", "&#124;")


def _code(text: str) -> str:
    return "<code>" + html.escape(text).replace("|", "&#124;") + "</code>"


def _summary(parser: argparse.ArgumentParser) -> str:
    """The description's first sentence, without a leading "msvit-x: "."""
    text = re.sub(r"^msvit-[\w-]+:\s*", "", " ".join((parser.description or "").split()))
    m = re.match(r"(.+?\.)(\s|$)", text)
    return m.group(1) if m else text


def _argument(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """``--out DIR`` / ``-h, --help`` / ``SOURCE``: the invocation, choices left to the help column."""
    if not action.option_strings:
        if action.metavar is None and action.choices:
            return "{" + ",".join(map(str, action.choices)) + "}"
        return action.metavar or action.dest
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    metavar = action.metavar or action.dest.upper()
    return ", ".join(f"{o} {metavar}" for o in action.option_strings)


def _rows(parser: argparse.ArgumentParser, group: argparse._ArgumentGroup) -> list[str]:
    fmt = parser._get_formatter()
    rows = []
    for action in group._group_actions:
        if action.help == argparse.SUPPRESS:
            continue
        helptext = _cell(fmt._expand_help(action)) if action.help else ""
        if isinstance(action, argparse._SubParsersAction):
            helptext = "<br>".join(f"{_code(c.dest)}: {_cell(c.help or '')}" for c in action._choices_actions)
        elif action.choices:
            helptext += ("<br>" if helptext else "") + "one of: " + ", ".join(_code(str(c)) for c in action.choices)
        if action.required and action.option_strings:
            helptext += " (required)"
        default = action.default
        shown = ""
        if (action.option_strings and default not in (None, False, [], argparse.SUPPRESS)
                and not isinstance(action, argparse._HelpAction)):
            shown = _code(str(default))
        rows.append(f"| {_code(_argument(parser, action))} | {shown} | {helptext} |")
    return rows


def _title(title: str) -> str:
    """argparse's group titles as headings: capitalised, but not a precision name (int8)."""
    return title if re.match(r"^[a-z]+\d", title) else title[:1].upper() + title[1:]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """A command's subcommands (``msvit-web serve``, ``msvit-web build``), in the order they were added."""
    return {name: sub for a in parser._actions if isinstance(a, argparse._SubParsersAction)
            for name, sub in a.choices.items()}


def _sections(p: argparse.ArgumentParser, level: str) -> list[str]:
    out = [f"{level} Usage", "", "```text", p.format_usage().strip(), "```", ""]
    for group in p._action_groups:
        rows = _rows(p, group)
        if not rows:
            continue
        out += [f"{level} {_title(group.title or 'options')}", ""]
        if group.description:
            out += [_cell(group.description), ""]
        out += ["| argument | default | what it does |", "|---|---|---|", *rows, ""]
    return out


def render(cmd: Command) -> str:
    """The Markdown page of one command (and of each of its subcommands)."""
    p = cmd.build()
    out = [f"# {cmd.name}", "",
           "<!-- generated at build time from "
           f"{cmd.parser} by docs/hooks/cli_reference.py: edit the parser, not this page -->", ""]
    if p.description:
        out += ["\n\n".join(_cell(par) for par in re.split(r"\n\s*\n", p.description.strip())), ""]
    out += _sections(p, "##")
    for name, sub in subcommands(p).items():
        out += [f"## `{cmd.name} {name}`", ""]
        if sub.description:
            out += [_cell(sub.description), ""]
        out += _sections(sub, "###")
    if p.epilog:
        out += ["## More from `--help`", "", "```text", p.epilog.strip("\n"), "```", ""]
    return "\n".join(out)


def render_index() -> str:
    rows = [f"| [{c.name}]({c.name}.md) | {_cell(_summary(c.build()))} |" for c in COMMANDS]
    return "\n".join([
        "# CLI reference", "",
        "One page per command, generated when the site is built from the command's own `argparse` parser: "
        "every option, its default and its help are the ones `--help` prints.", "",
        "| command | what it does |", "|---|---|", *rows, ""])


# ----------------------------------------------------------------------------- mkdocs events
def _expand(nav):
    """Replace the nav item whose page is cli/index.md by a section: the index, then one page per command."""
    if isinstance(nav, list):
        return [_expand(item) for item in nav]
    if isinstance(nav, dict):
        out = {}
        for title, value in nav.items():
            if value == INDEX:
                value = [INDEX, *({c.name: c.page} for c in COMMANDS)]
            else:
                value = _expand(value)
            out[title] = value
        return out
    return nav


def on_config(config, **kwargs):
    if config.get("nav"):
        config["nav"] = _expand(config["nav"])
    return config


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    files.append(File.generated(config, INDEX, content=render_index()))
    for c in COMMANDS:
        files.append(File.generated(config, c.page, content=render(c)))
    return files
