#!/usr/bin/env python3
"""//deploy:alerts_lint_test: what promtool does not check in alerts.yml,
alerts_test.yml and prometheus.yml.

1. alerts.yml has the group "joule" with the alerts deploy/README.md
   describes, each with a `for`, a severity label and summary and
   description annotations, and only metric names README.md defines;
2. alerts_test.yml has, for every alert, a case where it fires (with its
   severity, summary and description checked) and a case where it must not;
3. prometheus.yml scrapes both jobs every 15 s with honor_labels (the rules
   rely on `job` being the Joule job id on per-job series) and loads
   alerts.yml.
"""

import os
import sys
import unittest

# Imports below come from the source tree; leave no __pycache__ there.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

import dashboard_check  # noqa: E402
import dashboard_exprs  # noqa: E402  (dashboard_check puts it on the path)

PROMETHEUS = os.path.join(dashboard_check.ROOT, "deploy", "prometheus")
ALERTS = {"JouleDeviceNearThrottle", "JouleTelemetryStale", "JouleAgentDown",
          "JouleJobOverEnergyBudget", "JouleAgentDegraded"}
SEVERITIES = {"warning", "critical"}


def load(name):
    with open(os.path.join(PROMETHEUS, name), encoding="utf-8") as f:
        return dashboard_exprs.load_yaml(f.read())


class AlertsLintTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rules = load("alerts.yml")
        cls.tests = load("alerts_test.yml")
        cls.alerts = {rule["alert"]: rule for group in cls.rules["groups"]
                      for rule in group["rules"] if "alert" in rule}

    def test_group_and_alerts(self):
        self.assertEqual(["joule"], [group["name"] for group in self.rules["groups"]])
        self.assertEqual(ALERTS, set(self.alerts))

    def test_each_alert_has_for_severity_and_annotations(self):
        for name, rule in self.alerts.items():
            with self.subTest(alert=name):
                self.assertTrue(rule.get("for"), "%s has no for" % name)
                self.assertIn((rule.get("labels") or {}).get("severity"), SEVERITIES)
                annotations = rule.get("annotations") or {}
                self.assertTrue(annotations.get("summary"), "%s has no summary" % name)
                self.assertTrue(annotations.get("description"), "%s has no description" % name)

    def test_metric_names_are_in_readme(self):
        with open(dashboard_check.README, encoding="utf-8") as f:
            known = dashboard_check.readme_metric_names(f.read())
        exprs = [("alert " + name, str(rule["expr"])) for name, rule in self.alerts.items()]
        problems = dashboard_check.unknown_metric_problems(exprs, known)
        self.assertEqual([], problems, "\n".join(problems))

    def test_each_alert_is_tested_firing_and_silent(self):
        fires, silent = set(), set()
        for group in self.tests["tests"]:
            for case in group.get("alert_rule_test") or []:
                name = case["alertname"]
                self.assertIn(name, self.alerts, "alerts_test.yml tests an unknown alert")
                expected = case.get("exp_alerts") or []
                (fires if expected else silent).add(name)
                rule = self.alerts[name]
                for alert in expected:
                    self.assertEqual(rule["labels"]["severity"], alert["exp_labels"].get("severity"),
                                     "%s at %s: severity" % (name, case["eval_time"]))
                    self.assertEqual({"summary", "description"}, set(alert.get("exp_annotations") or {}),
                                     "%s at %s: annotations" % (name, case["eval_time"]))
        self.assertEqual(set(), set(self.alerts) - fires, "alerts never tested firing")
        self.assertEqual(set(), set(self.alerts) - silent, "alerts never tested not firing")

    def test_prometheus_config(self):
        config = load("prometheus.yml")
        self.assertEqual("15s", config["global"]["scrape_interval"])
        self.assertEqual(["alerts.yml"], config["rule_files"])
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        self.assertEqual({"joule-scheduler", "joule-agent"}, set(jobs))
        for name, job in jobs.items():
            with self.subTest(job=name):
                self.assertIs(True, job.get("honor_labels"))
                self.assertTrue(job["static_configs"][0]["targets"])


if __name__ == "__main__":
    unittest.main()
