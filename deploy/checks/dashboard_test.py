#!/usr/bin/env python3
"""//deploy:dashboard_test: the Grafana dashboard and provisioning are valid.

Fails (never skips) when promtool is missing, saying to run scripts/setup.sh.
"""

import json
import os
import sys
import unittest

# Imports below come from the source tree; leave no __pycache__ there.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

import dashboard_check  # noqa: E402
import dashboard_exprs  # noqa: E402  (dashboard_check puts it on the path)

ROOT = dashboard_check.ROOT
BAD_DASHBOARD = os.path.join(ROOT, "deploy", "checks", "testdata", "bad_dashboard.json")
PROVISIONING = os.path.join(ROOT, "deploy", "grafana", "provisioning")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


class DashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.promtool = dashboard_check.find_promtool()
        cls.known = dashboard_check.readme_metric_names(read(dashboard_check.README))

    def test_dashboard_has_no_problems(self):
        problems = dashboard_check.check_dashboard(read(dashboard_check.DASHBOARD), self.promtool, self.known)
        self.assertEqual([], problems, "\n" + "\n".join(problems))

    def test_dashboard_shows_each_area(self):
        dashboard = json.loads(read(dashboard_check.DASHBOARD))
        self.assertEqual("joule", dashboard["uid"])
        used = set()
        for _, _, expr in dashboard_exprs.dashboard_exprs(dashboard):
            used |= dashboard_check.expr_metric_names(expr)
        for name in ("joule_cluster_power_watts", "joule_node_power_watts",
                     "joule_job_energy_joules_total", "joule_device_power_limit_watts",
                     "joule_device_temperature_celsius", "joule_device_throttle_temperature_celsius",
                     "joule_queue_length", "joule_jobs", "joule_queue_wait_seconds_bucket",
                     "joule_energy_saved_joules_total", "joule_job_energy_saved_joules",
                     "joule_co2e_grams_total", "joule_cost_total"):
            self.assertIn(name, used)

    def test_each_fault_is_reported_with_its_panel(self):
        problems = dashboard_check.check_dashboard(read(BAD_DASHBOARD), self.promtool, self.known)
        text = "\n".join(problems)
        expected = [
            "dashboard uid is 'not-joule'",
            'no template variable "datasource"',
            'panel 2 "Unbalanced parenthesis" target A: invalid PromQL',
            'panel 3 "No targets" has no target',
            'panel 4 "Unknown metric" target A: metric joule_cluster_watts is not in README.md',
            'panel 5 "Fixed data source" does not use the ${datasource} data source',
            'panel 7 "Bad matcher in a row" target B: invalid PromQL',
            'panel 7 "Bad matcher in a row" target C: unknown Grafana variable $__unknown',
            'panel 7 "Bad matcher in a row" target D has no expr',
        ]
        for want in expected:
            self.assertIn(want, text)
        self.assertEqual(len(expected), len(problems), text)
        self.assertNotIn("Good panel", text)

    def test_invalid_json_is_reported(self):
        problems = dashboard_check.check_dashboard('{"uid": "joule",', self.promtool, self.known)
        self.assertEqual(1, len(problems))
        self.assertIn("not valid JSON", problems[0])

    def test_readme_metric_names(self):
        self.assertIn("joule_device_sm_clock_hertz", self.known)
        self.assertIn("joule_device_memory_clock_hertz", self.known)
        self.assertIn("joule_queue_wait_seconds_bucket", self.known)
        self.assertNotIn("joule_cluster_power_watts_bucket", self.known)
        self.assertEqual({"joule_a", "joule_b_total"},
                         dashboard_check.expr_metric_names('joule_a + rate(joule_b_total{x="joule_c"}[1m])'))

    def test_missing_promtool_says_how_to_get_it(self):
        path = os.environ.get("PATH", "")
        os.environ["PATH"] = ""
        try:
            with self.assertRaisesRegex(dashboard_check.MissingToolError, "run scripts/setup.sh"):
                dashboard_check.find_promtool()
        finally:
            os.environ["PATH"] = path


class ProvisioningTest(unittest.TestCase):
    def test_datasource(self):
        config = dashboard_exprs.load_yaml(read(os.path.join(PROVISIONING, "datasources", "joule.yaml")))
        self.assertEqual(1, config["apiVersion"])
        (source,) = config["datasources"]
        self.assertEqual("prometheus", source["type"])
        self.assertEqual("http://prometheus:9090", source["url"])

    def test_dashboard_provider(self):
        config = dashboard_exprs.load_yaml(read(os.path.join(PROVISIONING, "dashboards", "joule.yaml")))
        self.assertEqual(1, config["apiVersion"])
        (provider,) = config["providers"]
        self.assertEqual("file", provider["type"])
        self.assertTrue(provider["options"]["path"])


if __name__ == "__main__":
    unittest.main()
