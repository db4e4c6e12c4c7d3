#!/usr/bin/env python3
"""Lists every PromQL expression of Joule's Grafana dashboard and alert rules.

Prints one line per expression, `SOURCE<TAB>EXPR`: SOURCE is the panel title
(one line per target, so a panel with two targets gives two lines) or the
alert name; EXPR is on one line. The end-to-end metrics test runs each one
against a real Prometheus. Note that an alert expression is a filter: it only
returns data while the alert's condition holds.

Grafana's interval variables are replaced by fixed durations ($__rate_interval
and $__interval by 1m, $__range by 1h) so that every line is plain PromQL;
--raw prints the dashboard's text unchanged.

  tests/metrics/dashboard_exprs.py [--only dashboard|alerts] [--raw]
      [--dashboard FILE] [--rules FILE]

Defaults: deploy/grafana/dashboards/joule.json and
deploy/prometheus/alerts.yml of the checkout (or Bazel runfiles tree) this
script is in.

Only Python's standard library is used (Debian's python3 has no YAML module
unless python3-yaml is installed), so rule files are read by load_yaml below,
which understands the block-style subset of YAML that Prometheus rule and
rule-test files are written in and rejects anything else.
"""

import argparse
import json
import os
import re
import sys

DASHBOARD = os.path.join("deploy", "grafana", "dashboards", "joule.json")
RULES = os.path.join("deploy", "prometheus", "alerts.yml")

# Grafana's built-in interval variables and the durations used in their place.
GRAFANA_DURATIONS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}
_GRAFANA_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


# --- Expressions -----------------------------------------------------------


def one_line(expr):
    """Joins a multi-line expression into one line."""
    return " ".join(line.strip() for line in expr.strip().splitlines() if line.strip())


def substitute_grafana_variables(expr):
    """Replaces $__rate_interval, ${__range}, ... by durations; fails on others."""

    def replace(match):
        name = match.group(1) or match.group(2)
        if name not in GRAFANA_DURATIONS:
            raise ValueError("unknown Grafana variable $%s in %r" % (name, expr))
        return GRAFANA_DURATIONS[name]

    return _GRAFANA_VAR.sub(replace, expr)


def _walk_panels(panels):
    for panel in panels:
        yield panel
        # A collapsed row keeps its panels inside it.
        yield from _walk_panels(panel.get("panels", []))


def dashboard_exprs(dashboard):
    """Returns (panel title, refId, expr) for every target of a parsed dashboard."""
    result = []
    for panel in _walk_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" in target:
                result.append((panel.get("title", ""), target.get("refId", ""), target["expr"]))
    return result


def rule_exprs(rules):
    """Returns (alert or record name, expr) for every rule of a parsed rule file."""
    result = []
    for group in rules.get("groups") or []:
        for rule in group.get("rules") or []:
            name = rule.get("alert") or rule.get("record")
            result.append((name, str(rule["expr"])))
    return result


# --- A YAML subset ---------------------------------------------------------


class YamlSubsetError(ValueError):
    pass


_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?$")


class _YamlSubsetParser:
    """Block mappings and sequences, plain, quoted and block (| >) scalars,
    flow sequences of scalars, comments. No anchors, tags, multi-line plain
    or quoted scalars, or flow mappings other than {}."""

    def __init__(self, text):
        self.lines = text.splitlines()
        self.i = 0

    def error(self, message, line=None):
        line = self.i if line is None else line
        raise YamlSubsetError("line %d: %s" % (line + 1, message))

    def peek(self):
        """Skips blank and comment lines; returns (indent, content) or None."""
        while self.i < len(self.lines):
            raw = self.lines[self.i]
            if "\t" in raw[: len(raw) - len(raw.lstrip())]:
                self.error("tab in indentation")
            stripped = raw.strip()
            if stripped and not stripped.startswith("#"):
                return len(raw) - len(raw.lstrip(" ")), stripped
            self.i += 1
        return None

    def document(self):
        top = self.peek()
        if top is None:
            return None
        if top[0] != 0:
            self.error("document must start at column 0")
        value = self.node(0)
        if self.peek() is not None:
            self.error("unexpected indentation")
        return value

    def node(self, indent):
        _, content = self.peek()
        if content == "-" or content.startswith("- "):
            return self.sequence(indent)
        return self.mapping(indent)

    def sequence(self, indent):
        items = []
        while True:
            top = self.peek()
            if top is None or top[0] < indent:
                return items
            if top[0] > indent:
                self.error("unexpected indentation")
            content = top[1]
            if not (content == "-" or content.startswith("- ")):
                return items
            rest = content[1:].lstrip(" ")
            if not rest or rest.startswith("#"):
                self.i += 1
                nxt = self.peek()
                items.append(self.node(nxt[0]) if nxt and nxt[0] > indent else None)
                continue
            # "- key: value" or "- scalar": re-read the rest of the line as a
            # node indented where it starts.
            column = indent + len(content) - len(rest)
            if rest == "-" or rest.startswith("- "):
                self.lines[self.i] = " " * column + rest
                items.append(self.sequence(column))
            elif self._is_mapping_entry(rest):
                self.lines[self.i] = " " * column + rest
                items.append(self.mapping(column))
            else:
                self.i += 1
                items.append(self.scalar(rest))
                self._no_continuation(indent)

    @staticmethod
    def _split_key(content):
        if content[0] in "'\"":
            end = content.find(content[0], 1)
            if end < 0 or content[end + 1 : end + 2] != ":":
                return None
            return content[1:end], content[end + 2 :]
        match = re.match(r"^([^\s:#'\"][^:#]*?):(?:\s|$)(.*)$", content)
        if not match:
            return None
        return match.group(1), match.group(2)

    def _is_mapping_entry(self, content):
        return self._split_key(content) is not None

    def _no_continuation(self, indent):
        top = self.peek()
        if top is not None and top[0] > indent:
            self.error("multi-line plain or quoted scalars are not supported")

    def mapping(self, indent):
        result = {}
        while True:
            top = self.peek()
            if top is None or top[0] < indent:
                return result
            if top[0] > indent:
                self.error("unexpected indentation")
            content = top[1]
            if content == "-" or content.startswith("- "):
                return result
            split = self._split_key(content)
            if split is None:
                self.error("expected 'key: value'")
            key, rest = split
            if key in result:
                self.error("duplicate key %r" % key)
            rest = rest.strip()
            self.i += 1
            if rest[:1] in ("|", ">"):
                result[key] = self.block_scalar(indent, rest)
            elif rest == "" or rest.startswith("#"):
                nxt = self.peek()
                if nxt and (nxt[0] > indent or (nxt[0] == indent and (nxt[1] == "-" or nxt[1].startswith("- ")))):
                    result[key] = self.node(nxt[0])
                else:
                    result[key] = None
            else:
                result[key] = self.scalar(rest)
                self._no_continuation(indent)

    def block_scalar(self, indent, header):
        header = header.split(" #")[0].strip()
        if header not in ("|", "|-", "|+", ">", ">-", ">+"):
            self.error("unsupported block scalar header %r" % header, self.i - 1)
        lines = []
        content_indent = None
        while self.i < len(self.lines):
            raw = self.lines[self.i]
            if raw.strip() == "":
                lines.append("")
                self.i += 1
                continue
            current = len(raw) - len(raw.lstrip(" "))
            if content_indent is None:
                if current <= indent:
                    break
                content_indent = current
            if current < content_indent:
                break
            lines.append(raw[content_indent:])
            self.i += 1
        trailing = 0
        while lines and lines[-1] == "":
            lines.pop()
            trailing += 1
        if header[0] == "|":
            text = "\n".join(lines)
        else:
            if any(line.startswith(" ") for line in lines):
                self.error("more-indented lines in a folded scalar are not supported")
            text = ""
            for n, line in enumerate(lines):
                if n == 0:
                    text = line
                elif line == "":
                    text += "\n"
                elif lines[n - 1] == "":
                    text += line
                else:
                    text += " " + line
        if not lines:
            return ""
        if header.endswith("-"):
            return text
        if header.endswith("+"):
            return text + "\n" * (1 + trailing)
        return text + "\n"

    def scalar(self, text):
        if text[0] == "'":
            value, rest = self._single_quoted(text)
        elif text[0] == '"':
            value, rest = self._double_quoted(text)
        elif text[0] == "[":
            return self._flow_sequence(text)
        elif text[0] == "{":
            if text.split(" #")[0].strip() != "{}":
                self.error("flow mappings are not supported", self.i - 1)
            return {}
        elif text[0] in "&*!%@`":
            self.error("unsupported YAML syntax %r" % text, self.i - 1)
        else:
            return self._plain(re.split(r"\s#", text, maxsplit=1)[0].strip())
        rest = rest.strip()
        if rest and not rest.startswith("#"):
            self.error("text after a quoted scalar: %r" % rest, self.i - 1)
        return value

    @staticmethod
    def _plain(text):
        if text in ("", "~", "null", "Null", "NULL"):
            return None
        if text in ("true", "True", "TRUE"):
            return True
        if text in ("false", "False", "FALSE"):
            return False
        if _INT.match(text):
            return int(text)
        if _FLOAT.match(text):
            return float(text)
        return text

    def _single_quoted(self, text):
        out = []
        n = 1
        while n < len(text):
            if text[n] == "'":
                if text[n + 1 : n + 2] == "'":
                    out.append("'")
                    n += 2
                    continue
                return "".join(out), text[n + 1 :]
            out.append(text[n])
            n += 1
        self.error("unterminated quoted scalar", self.i - 1)

    _ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r", "0": "\0"}

    def _double_quoted(self, text):
        out = []
        n = 1
        while n < len(text):
            c = text[n]
            if c == '"':
                return "".join(out), text[n + 1 :]
            if c == "\\":
                escape = text[n + 1 : n + 2]
                if escape not in self._ESCAPES:
                    self.error("unsupported escape \\%s" % escape, self.i - 1)
                out.append(self._ESCAPES[escape])
                n += 2
                continue
            out.append(c)
            n += 1
        self.error("unterminated quoted scalar", self.i - 1)

    def _flow_sequence(self, text):
        items = []
        n = 1
        while True:
            while n < len(text) and text[n] == " ":
                n += 1
            if n >= len(text):
                self.error("unterminated flow sequence", self.i - 1)
            if text[n] == "]":
                rest = text[n + 1 :].strip()
                if rest and not rest.startswith("#"):
                    self.error("text after a flow sequence", self.i - 1)
                return items
            if text[n] in "'\"":
                value, rest = (self._single_quoted if text[n] == "'" else self._double_quoted)(text[n:])
                n = len(text) - len(rest)
            else:
                end = n
                while end < len(text) and text[end] not in ",]":
                    end += 1
                value = self._plain(text[n:end].strip())
                if text[n:end].strip()[:1] in ("[", "{"):
                    self.error("nested flow collections are not supported", self.i - 1)
                n = end
            items.append(value)
            while n < len(text) and text[n] == " ":
                n += 1
            if n < len(text) and text[n] == ",":
                n += 1


def load_yaml(text):
    """Parses the block-style YAML subset described in _YamlSubsetParser."""
    return _YamlSubsetParser(text).document()


# --- Command line ----------------------------------------------------------


def _default_path(relative):
    """The file relative to this script's checkout or runfiles tree."""
    here = os.path.abspath(__file__)
    for script in (here, os.path.realpath(here)):
        root = os.path.dirname(os.path.dirname(os.path.dirname(script)))
        candidate = os.path.join(root, relative)
        if os.path.exists(candidate):
            return candidate
    return relative


def lines(dashboard_path, rules_path, only=None, raw=False):
    """Returns the output lines (without newlines)."""
    out = []
    if only in (None, "dashboard"):
        with open(dashboard_path, encoding="utf-8") as f:
            dashboard = json.load(f)
        for title, _, expr in dashboard_exprs(dashboard):
            expr = one_line(expr)
            out.append((title, expr if raw else substitute_grafana_variables(expr)))
    if only in (None, "alerts"):
        with open(rules_path, encoding="utf-8") as f:
            rules = load_yaml(f.read())
        for name, expr in rule_exprs(rules):
            out.append((name, one_line(expr)))
    for source, expr in out:
        if "\t" in source or "\n" in source or not source or not expr:
            raise ValueError("cannot print %r: %r on one line" % (source, expr))
    return ["%s\t%s" % pair for pair in out]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dashboard", default=None, help="Grafana dashboard JSON")
    parser.add_argument("--rules", default=None, help="Prometheus rule file")
    parser.add_argument("--only", choices=("dashboard", "alerts"), default=None)
    parser.add_argument("--raw", action="store_true", help="keep Grafana's $__ variables")
    args = parser.parse_args(argv)
    try:
        output = lines(args.dashboard or _default_path(DASHBOARD),
                       args.rules or _default_path(RULES), args.only, args.raw)
    except (OSError, ValueError) as e:
        print("dashboard_exprs: %s" % e, file=sys.stderr)
        return 1
    for line in output:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
