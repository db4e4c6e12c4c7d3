#!/usr/bin/env python3
"""//tests/metrics:dashboard_exprs_test: the expression lister and its YAML reader."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

# The runfiles tree under Bazel (as the end-to-end test will use the script),
# else the checkout.
if os.environ.get("TEST_SRCDIR") and os.environ.get("TEST_WORKSPACE"):
    ROOT = os.path.join(os.environ["TEST_SRCDIR"], os.environ["TEST_WORKSPACE"])
else:
    ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
SCRIPT = os.path.join(ROOT, "tests", "metrics", "dashboard_exprs.py")
# Imports below come from the source tree; leave no __pycache__ there.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(SCRIPT))

import dashboard_exprs  # noqa: E402


def run(*args):
    return subprocess.run([sys.executable, SCRIPT] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)


class ListingTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(dir=os.environ.get("TEST_TMPDIR"))
        self.addCleanup(self.tmp.cleanup)

    def write(self, name, text):
        path = os.path.join(self.tmp.name, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_fixture(self):
        dashboard = self.write("d.json", json.dumps({"panels": [
            {"title": "Power", "targets": [{"refId": "A", "expr": "sum(joule_node_power_watts)"},
                                           {"refId": "B", "expr": "rate(x[$__rate_interval])\n  * 2"}]},
            {"title": "A row", "type": "row", "panels": [
                {"title": "Inside", "targets": [{"refId": "A", "expr": "increase(y[${__range}])"}]}]},
            {"title": "Text", "type": "text"},
        ]}))
        rules = self.write("r.yml", textwrap.dedent("""\
            groups:
              - name: g
                rules:
                  - alert: Hot   # a comment
                    expr: |
                      a
                        > on (node) b
                    for: 1m
                  - record: x:rate1m
                    expr: rate(x[1m])
            """))
        done = run("--dashboard", dashboard, "--rules", rules)
        self.assertEqual(0, done.returncode, done.stderr)
        self.assertEqual([
            "Power\tsum(joule_node_power_watts)",
            "Power\trate(x[1m]) * 2",
            "Inside\tincrease(y[1h])",
            "Hot\ta > on (node) b",
            "x:rate1m\trate(x[1m])",
        ], done.stdout.splitlines())
        raw = run("--dashboard", dashboard, "--rules", rules, "--only", "dashboard", "--raw")
        self.assertEqual(["Power\tsum(joule_node_power_watts)", "Power\trate(x[$__rate_interval]) * 2",
                          "Inside\tincrease(y[${__range}])"], raw.stdout.splitlines())
        alerts = run("--dashboard", dashboard, "--rules", rules, "--only", "alerts")
        self.assertEqual(["Hot\ta > on (node) b", "x:rate1m\trate(x[1m])"], alerts.stdout.splitlines())

    def test_unknown_grafana_variable_fails(self):
        dashboard = self.write("d.json", json.dumps(
            {"panels": [{"title": "P", "targets": [{"expr": "x{node=\"$node\"}"}]}]}))
        done = run("--dashboard", dashboard, "--only", "dashboard")
        self.assertEqual(1, done.returncode)
        self.assertIn("unknown Grafana variable $node", done.stderr)

    def test_missing_file_fails(self):
        done = run("--dashboard", os.path.join(self.tmp.name, "none.json"), "--only", "dashboard")
        self.assertEqual(1, done.returncode)
        self.assertIn("none.json", done.stderr)

    def test_repository_files(self):
        done = run()
        self.assertEqual(0, done.returncode, done.stderr)
        out = done.stdout.splitlines()
        with open(os.path.join(ROOT, "deploy", "grafana", "dashboards", "joule.json"), encoding="utf-8") as f:
            dashboard = json.load(f)
        targets = [t for p in dashboard["panels"] for t in p.get("targets", [])]
        alerts = [line.split("\t")[0] for line in out[len(targets):]]
        self.assertEqual(len(targets) + 5, len(out))
        self.assertEqual(["JouleDeviceNearThrottle", "JouleTelemetryStale", "JouleAgentDown",
                          "JouleJobOverEnergyBudget", "JouleAgentDegraded"], alerts)
        for line in out:
            source, expr = line.split("\t")
            self.assertTrue(source and expr)
            self.assertNotIn("$", expr)
        titles = {line.split("\t")[0] for line in out}
        self.assertTrue({p["title"] for p in dashboard["panels"]} <= titles)


class YamlSubsetTest(unittest.TestCase):
    def test_structures_and_scalars(self):
        text = textwrap.dedent("""\
            # comment
            a: 1
            b: 1.5
            c: true
            d: ~
            e: 'it''s # not a comment'
            f: "tab\\there"
            g: plain value # comment
            h: [alerts.yml, "x y", 3]
            i: []
            j: {}
            k:
            - one
            - two: 2
              three: 3
            l:
              - - nested
            m: 1m30s
            n: n1:7073
            """)
        self.assertEqual({
            "a": 1, "b": 1.5, "c": True, "d": None, "e": "it's # not a comment", "f": "tab\there",
            "g": "plain value", "h": ["alerts.yml", "x y", 3], "i": [], "j": {},
            "k": ["one", {"two": 2, "three": 3}], "l": [["nested"]], "m": "1m30s", "n": "n1:7073",
        }, dashboard_exprs.load_yaml(text))

    def test_block_scalars(self):
        text = textwrap.dedent("""\
            literal: |
              a
                b

              c
            strip: |-
              x
            folded: >-
              one
              two

              three
            folded_clip: >
              p
              q
            after: end
            """)
        self.assertEqual({"literal": "a\n  b\n\nc\n", "strip": "x", "folded": "one two\nthree",
                          "folded_clip": "p q\n", "after": "end"}, dashboard_exprs.load_yaml(text))

    def test_unsupported_syntax_is_an_error(self):
        for text in ("a: &anchor 1\n", "a: {b: 1}\n", "a: plain\n  continued\n", "a: 1\n  b: 2\n",
                     "a: 1\na: 2\n", "a: 'open\n", "a: [x, [y]]\n"):
            with self.subTest(text=text):
                with self.assertRaises(dashboard_exprs.YamlSubsetError):
                    dashboard_exprs.load_yaml(text)

    def test_agrees_with_pyyaml_on_the_deploy_files(self):
        try:
            import yaml
        except ImportError:
            self.skipTest("PyYAML (python3-yaml) is not installed")
        for name in ("prometheus/prometheus.yml", "prometheus/alerts.yml", "prometheus/alerts_test.yml",
                     "grafana/provisioning/datasources/joule.yaml",
                     "grafana/provisioning/dashboards/joule.yaml"):
            with self.subTest(file=name):
                with open(os.path.join(ROOT, "deploy", name), encoding="utf-8") as f:
                    text = f.read()
                self.assertEqual(yaml.safe_load(text), dashboard_exprs.load_yaml(text))


if __name__ == "__main__":
    unittest.main()
