#!/usr/bin/env python3
"""//deploy:alerts_mutation_test: alerts_test.yml catches wrong thresholds.

Each mutation below changes one thing in a copy of alerts.yml (a threshold,
a `for`, a comparison, a filter) and `promtool test rules` must then fail.
A mutation whose text is no longer in alerts.yml fails this test: update it
together with the rule.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

# Imports below come from the source tree; leave no __pycache__ there.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

import dashboard_check  # noqa: E402

PROMETHEUS = os.path.join(dashboard_check.ROOT, "deploy", "prometheus")

# (what it breaks, text in alerts.yml, replacement)
MUTATIONS = [
    ("near throttle: within 5 °C includes 5 °C", ">= on (instance", "> on (instance"),
    ("near throttle: margin of 5 °C", "> 0) - 5)", "> 0) - 6)"),
    ("near throttle: unknown throttle temperature", "(joule_device_throttle_temperature_celsius > 0)",
     "joule_device_throttle_temperature_celsius"),
    ("near throttle: for 2m", "for: 2m", "for: 1m"),
    ("stale: older than 60 s", "(joule_node_telemetry_age_seconds > 60)", "(joule_node_telemetry_age_seconds >= 60)"),
    ("stale: leader only", "(joule_node_telemetry_age_seconds > 60)\n    and on (instance) (joule_leader == 1)",
     "(joule_node_telemetry_age_seconds > 60)"),
    ("agent down: agents only", 'up{job="joule-agent"} == 0', "up == 0"),
    ("budget: leader only", "sum by (job, user) (joule_job_energy_joules_total and on (instance) (joule_leader == 1))",
     "sum by (job, user) (joule_job_energy_joules_total)"),
    ("budget: over, not at", "  > on (job, user)", "  >= on (job, user)"),
    ("degraded: for 5m", "for: 5m", "for: 4m"),
    ("degraded: only when 1", "joule_agent_source_degraded == 1", "joule_agent_source_degraded >= 0"),
    ("stale: severity", "severity: critical", "severity: warning"),
]


class AlertsMutationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.promtool = dashboard_check.find_promtool()
        with open(os.path.join(PROMETHEUS, "alerts.yml"), encoding="utf-8") as f:
            cls.alerts = f.read()

    def promtool_test(self, alerts):
        with tempfile.TemporaryDirectory(dir=os.environ.get("TEST_TMPDIR")) as directory:
            with open(os.path.join(directory, "alerts.yml"), "w", encoding="utf-8") as f:
                f.write(alerts)
            shutil.copy(os.path.join(PROMETHEUS, "alerts_test.yml"), directory)
            return subprocess.run([self.promtool, "test", "rules", os.path.join(directory, "alerts_test.yml")],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)

    def test_unchanged_rules_pass(self):
        done = self.promtool_test(self.alerts)
        self.assertEqual(0, done.returncode, done.stdout)

    def test_each_mutation_fails(self):
        for what, old, new in MUTATIONS:
            with self.subTest(mutation=what):
                # Rules are indented in the file: after a newline in `old`,
                # any indentation matches.
                lines = old.split("\n")
                pattern = r"\n *".join([re.escape(lines[0])] + [re.escape(line.lstrip(" ")) for line in lines[1:]])
                found = list(re.finditer(pattern, self.alerts))
                self.assertEqual(1, len(found), "%r is not once in alerts.yml: update the mutation" % old)
                mutated = self.alerts[: found[0].start()] + new + self.alerts[found[0].end() :]
                done = self.promtool_test(mutated)
                self.assertNotEqual(0, done.returncode, "alerts_test.yml passes with the mutation: " + what)
                self.assertIn("FAILED", done.stdout)


if __name__ == "__main__":
    unittest.main()
