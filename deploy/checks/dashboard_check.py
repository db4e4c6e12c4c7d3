#!/usr/bin/env python3
"""Checks Joule's Grafana dashboard and the metric names of its expressions.

check_dashboard() returns a list of problems, each naming the panel it is
about; the dashboard is good when the list is empty:

1. the file is JSON, with uid "joule", a schemaVersion and a `datasource`
   template variable of type datasource for Prometheus;
2. every panel has an id of its own, a title, a gridPos, uses
   ${datasource}, and has at least one target, every target an `expr`;
3. every expr, with Grafana's $__ interval variables replaced, is valid PromQL:
   all of them go into a temporary rule file as recording rules, which
   `promtool check rules` parses; when it fails, each expression is checked
   alone to name the bad ones;
4. every joule_* metric an expr uses is listed in README.md "## Metrics"
   (histograms with their _bucket, _sum and _count series).

Run by //deploy:dashboard_test; by hand:
  deploy/checks/dashboard_check.py [deploy/grafana/dashboards/joule.json]
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile


def _root():
    """The checkout, or the Bazel runfiles tree a test runs in."""
    if os.environ.get("TEST_SRCDIR") and os.environ.get("TEST_WORKSPACE"):
        return os.path.join(os.environ["TEST_SRCDIR"], os.environ["TEST_WORKSPACE"])
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


ROOT = _root()
# Imports below come from the source tree; leave no __pycache__ there.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "metrics"))

import dashboard_exprs  # noqa: E402  (found through the path above)

DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "dashboards", "joule.json")
README = os.path.join(ROOT, "README.md")
UID = "joule"
DATASOURCE_UID = "${datasource}"

SETUP_HINT = "promtool not found on PATH: run scripts/setup.sh (it installs Debian's prometheus package)"


class MissingToolError(RuntimeError):
    pass


def find_promtool():
    """Returns promtool's path; raises MissingToolError saying how to get it."""
    path = shutil.which("promtool")
    if path is None:
        raise MissingToolError(SETUP_HINT)
    return path


# --- Metric names ----------------------------------------------------------


def readme_metric_names(readme_text):
    """Every series name the README's "## Metrics" tables define."""
    match = re.search(r"^## Metrics\n(.*?)(?=^## )", readme_text, re.S | re.M)
    if not match:
        raise ValueError('README.md has no "## Metrics" section')
    names = set()
    for line in match.group(1).splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        found = re.findall(r"`(joule_[a-z0-9_]+)`", cells[0])
        names.update(found)
        if len(cells) > 1 and cells[1] == "histogram":
            for name in found:
                names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
    if not names:
        raise ValueError('README.md "## Metrics" lists no joule_ metric')
    return names


def expr_metric_names(expr):
    """The joule_* names in an expression, outside string literals."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    return set(re.findall(r"(?<![\w:])(joule_[A-Za-z0-9_]+)", without_strings))


def unknown_metric_problems(exprs, known):
    """exprs: (source, expr) pairs. One problem per unknown joule_* name."""
    problems = []
    for source, expr in exprs:
        for name in sorted(expr_metric_names(expr) - known):
            problems.append('%s: metric %s is not in README.md "## Metrics"' % (source, name))
    return problems


# --- PromQL syntax ---------------------------------------------------------


def _check_rules_file(promtool, exprs, directory):
    path = os.path.join(directory, "dashboard_rules.yml")
    with open(path, "w", encoding="utf-8") as f:
        f.write("groups:\n  - name: dashboard\n    rules:\n")
        for n, (_, expr) in enumerate(exprs):
            # A JSON string is a valid YAML double-quoted scalar.
            f.write("      - record: dashboard:expr_%d\n        expr: %s\n" % (n, json.dumps(expr)))
    done = subprocess.run([promtool, "check", "rules", path], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    return done.returncode, done.stdout


def promql_problems(exprs, promtool):
    """exprs: (source, expr) pairs. One problem per expression promtool rejects."""
    if not exprs:
        return []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TEST_TMPDIR")) as directory:
        code, together = _check_rules_file(promtool, exprs, directory)
        if code == 0:
            return []
        problems = []
        for source, expr in exprs:
            code, output = _check_rules_file(promtool, [(source, expr)], directory)
            if code != 0:
                detail = re.findall(r"could not parse expression: (.*)", output)
                detail = "; ".join(detail) or output.strip()
                problems.append("%s: invalid PromQL %r: %s" % (source, expr, detail))
        if not problems:
            problems.append("promtool rejected the expressions together but none alone:\n" + together)
        return problems


# --- The dashboard ---------------------------------------------------------


def _panel_name(panel, index):
    return 'panel %d "%s"' % (panel.get("id", index), panel.get("title", "?"))


def _uses_template_datasource(datasource):
    return isinstance(datasource, dict) and datasource.get("uid") == DATASOURCE_UID


def check_dashboard(text, promtool, known_metrics):
    """Returns the dashboard's problems (empty when it is good)."""
    try:
        dashboard = json.loads(text)
    except ValueError as e:
        return ["dashboard is not valid JSON: %s" % e]
    if not isinstance(dashboard, dict):
        return ["dashboard is not a JSON object"]
    problems = []
    if dashboard.get("uid") != UID:
        problems.append("dashboard uid is %r, not %r" % (dashboard.get("uid"), UID))
    if not isinstance(dashboard.get("schemaVersion"), int):
        problems.append("dashboard has no integer schemaVersion")
    if not dashboard.get("title"):
        problems.append("dashboard has no title")
    variables = (dashboard.get("templating") or {}).get("list") or []
    datasource = [v for v in variables if v.get("name") == "datasource"]
    if not datasource or datasource[0].get("type") != "datasource" or datasource[0].get("query") != "prometheus":
        problems.append('dashboard has no template variable "datasource" of type datasource for prometheus')

    panels = list(dashboard_exprs._walk_panels(dashboard.get("panels") or []))
    if not panels:
        problems.append("dashboard has no panels")
    ids = {}
    exprs = []
    for index, panel in enumerate(panels):
        name = _panel_name(panel, index)
        if panel.get("type") == "row":
            continue
        if "id" not in panel:
            problems.append("%s has no id" % name)
        elif panel["id"] in ids:
            problems.append("%s has the id of %s" % (name, ids[panel["id"]]))
        else:
            ids[panel["id"]] = name
        if not panel.get("title"):
            problems.append("%s has no title" % name)
        if not all(k in (panel.get("gridPos") or {}) for k in "xywh"):
            problems.append("%s has no gridPos" % name)
        if not _uses_template_datasource(panel.get("datasource")):
            problems.append("%s does not use the %s data source" % (name, DATASOURCE_UID))
        targets = panel.get("targets") or []
        if not targets:
            problems.append("%s has no target" % name)
        for target in targets:
            where = "%s target %s" % (name, target.get("refId", "?"))
            if "datasource" in target and not _uses_template_datasource(target["datasource"]):
                problems.append("%s does not use the %s data source" % (where, DATASOURCE_UID))
            expr = target.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                problems.append("%s has no expr" % where)
                continue
            try:
                exprs.append((where, dashboard_exprs.substitute_grafana_variables(expr)))
            except ValueError as e:
                problems.append("%s: %s" % (where, e))
    problems += promql_problems(exprs, promtool)
    problems += unknown_metric_problems(exprs, known_metrics)
    return problems


def main(argv):
    path = argv[0] if argv else DASHBOARD
    try:
        promtool = find_promtool()
    except MissingToolError as e:
        print(e, file=sys.stderr)
        return 1
    with open(README, encoding="utf-8") as f:
        known = readme_metric_names(f.read())
    with open(path, encoding="utf-8") as f:
        problems = check_dashboard(f.read(), promtool, known)
    for problem in problems:
        print(problem)
    print("%s: %s" % (path, "%d problem(s)" % len(problems) if problems else "OK"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
