#!/usr/bin/env python3
"""check_libs.py passes on deploy/docker/Dockerfile and fails on broken copies.

    deploy/docker/check_libs_test.py [JOULE-SCHEDULER JOULE-AGENT JOULECTL]

The binaries: the paths given (Bazel passes them), else $JOULE_BIN_DIR, else
the checkout's bazel-bin. Without them the test fails rather than skips:
build them first (bazel build //scheduler:joule-scheduler //agent:joule-agent
//cli:joulectl). Every mutation edits a temporary copy of the Dockerfile; a
mutation whose text is no longer in the Dockerfile fails, so that the test
never silently stops testing anything.
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
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)

import check_libs  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
DOCKERFILE = os.path.join(HERE, "Dockerfile")
CHECKER = os.path.join(HERE, "check_libs.py")
TARGETS = {
    "joule-scheduler": "scheduler/joule-scheduler",
    "joule-agent": "agent/joule-agent",
    "joulectl": "cli/joulectl",
}
BINARIES = {}  # name -> path, set in main


def find_binaries(argv):
    if argv:
        found = {os.path.basename(p): p for p in argv}
    else:
        bin_dir = os.environ.get("JOULE_BIN_DIR") or os.path.join(ROOT, "bazel-bin")
        found = {name: os.path.join(bin_dir, rel) for name, rel in TARGETS.items()}
    missing = [f"{n} ({found.get(n, 'not given')})" for n in TARGETS if not os.path.isfile(found.get(n, ""))]
    if missing:
        sys.exit("check_libs_test: binaries missing: " + ", ".join(missing)
                 + "; build them first: bazel build //scheduler:joule-scheduler //agent:joule-agent //cli:joulectl")
    return found


def edit_block(text, stage, remove=None, add=None):
    """The Dockerfile text with one package removed from / added to the
    runtime-packages block of a stage."""
    m = re.search(rf"(# runtime-packages: {stage} begin\n)(.*?)(# runtime-packages: {stage} end)", text, re.S)
    assert m, f"no runtime-packages block for {stage}"
    lines = m.group(2).splitlines(keepends=True)
    if remove is not None:
        kept = [line for line in lines if line.split() != [remove, "\\"]]
        assert len(kept) == len(lines) - 1, f"{remove} is not in the {stage} block"
        lines = kept
    if add is not None:
        lines.append(f"      {add} \\\n")
    return text[:m.start(2)] + "".join(lines) + text[m.end(2):]


def block_packages(text, stage):
    m = re.search(rf"# runtime-packages: {stage} begin\n(.*?)# runtime-packages: {stage} end", text, re.S)
    return [line.split()[0] for line in m.group(1).splitlines() if line.strip() and not line.strip().startswith("#")]


class CheckLibsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(DOCKERFILE, encoding="utf-8") as f:
            cls.dockerfile = f.read()
        cls.base = check_libs.base_packages(check_libs.package_database())

    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def run_checker(self, text=None, binaries=None):
        dockerfile = DOCKERFILE
        if text is not None:
            dockerfile = os.path.join(self.tmp, "Dockerfile")
            with open(dockerfile, "w", encoding="utf-8") as f:
                f.write(text)
        if binaries is None:
            binaries = [BINARIES[n] for n in TARGETS]
        result = subprocess.run([sys.executable, CHECKER, "--dockerfile", dockerfile] + binaries,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        return result.returncode, result.stdout

    def replaced(self, old, new):
        self.assertIn(old, self.dockerfile, "mutation no longer applies; update the test")
        return self.dockerfile.replace(old, new, 1)

    def test_real_dockerfile_passes(self):
        rc, out = self.run_checker()
        self.assertEqual(rc, 0, out)
        for name in TARGETS:
            stage = check_libs.STAGE_OF[name]
            self.assertRegex(out, rf"(?m)^{name}: \d+ libraries, all from packages the {stage} stage "
                                  r"installs or the base image holds$")

    def test_libssl3_removed_from_agent_fails(self):
        rc, out = self.run_checker(edit_block(self.dockerfile, "agent", remove="libssl3"))
        self.assertEqual(rc, 1, out)
        self.assertIn("joule-agent: libcrypto.so.3 (package libssl3) is installed by neither "
                      "the agent stage nor the base image", out)
        self.assertRegex(out, r"(?m)^joule-scheduler: \d+ libraries, all from")

    def test_every_needed_package_is_caught(self):
        # Each listed package the base image lacks: without it, some binary
        # of the stage misses a library.
        for stage in ("scheduler", "agent"):
            for package in block_packages(self.dockerfile, stage):
                if package in self.base:
                    continue
                with self.subTest(stage=stage, package=package):
                    rc, out = self.run_checker(edit_block(self.dockerfile, stage, remove=package))
                    self.assertEqual(rc, 1, out)
                    self.assertRegex(out, rf"(?m)^joule[-a-z]*: \S+ \(package {re.escape(package)}\) is installed "
                                          rf"by neither the {stage} stage nor the base image$")

    def test_package_of_the_base_image_may_be_left_out(self):
        # The agent names libstdc++6 for bases other than debian:12-slim;
        # debian:12-slim has it, so the check passes without it.
        self.assertIn("libstdc++6", self.base)
        rc, out = self.run_checker(edit_block(self.dockerfile, "agent", remove="libstdc++6"))
        self.assertEqual(rc, 0, out)

    def test_unneeded_package_fails(self):
        rc, out = self.run_checker(edit_block(self.dockerfile, "scheduler", add="dpkg"))
        self.assertEqual(rc, 1, out)
        self.assertIn("scheduler stage: dpkg is listed but no binary of the stage needs it", out)

    def test_unneeded_package_not_judged_without_all_binaries(self):
        # joulectl alone needs no prometheus-cpp; the scheduler does.
        rc, out = self.run_checker(binaries=[BINARIES["joulectl"]])
        self.assertEqual(rc, 0, out)
        self.assertIn("scheduler stage: unused packages not checked (not given: joule-scheduler)", out)

    def test_package_not_installed_here_fails(self):
        rc, out = self.run_checker(edit_block(self.dockerfile, "agent", add="joule-no-such-package"))
        self.assertEqual(rc, 1, out)
        self.assertIn("agent stage: joule-no-such-package is not installed on this machine", out)

    def test_unresolvable_soname_fails(self):
        with open(BINARIES["joulectl"], "rb") as f:
            data = f.read()
        self.assertIn(b"libyaml-cpp.so.0.7\0", data)
        patched = os.path.join(self.tmp, "joulectl")
        with open(patched, "wb") as f:
            f.write(data.replace(b"libyaml-cpp.so.0.7\0", b"libyaml-cpX.so.0.7\0"))
        rc, out = self.run_checker(binaries=[patched])
        self.assertEqual(rc, 1, out)
        self.assertIn("joulectl: libyaml-cpX.so.0.7 cannot be resolved on this machine", out)

    def test_base_other_than_debian_slim_fails(self):
        rc, out = self.run_checker(self.replaced("FROM debian:12.11-slim AS scheduler",
                                                 "FROM ubuntu:22.04 AS scheduler"))
        self.assertEqual(rc, 1, out)
        self.assertIn("scheduler stage: its base 'ubuntu:22.04' is not debian:12-slim", out)
        rc, out = self.run_checker(self.replaced("ARG AGENT_BASE=debian:12.11-slim",
                                                 "ARG AGENT_BASE=nvcr.io/nvidia/pytorch:24.01-py3"))
        self.assertEqual(rc, 1, out)
        self.assertIn("agent stage: its base 'nvcr.io/nvidia/pytorch:24.01-py3' is not debian:12-slim", out)

    def test_malformed_blocks_fail(self):
        for why, text in [
            ("no end", self.replaced("# runtime-packages: agent end\n", "")),
            ("no block", self.replaced("# runtime-packages: agent begin\n", "").replace(
                "# runtime-packages: agent end\n", "")),
            ("block in the wrong stage", self.replaced("# runtime-packages: scheduler", "# runtime-packages: agent")),
            ("not a package name", edit_block(self.dockerfile, "agent", add="libFoo_1")),
        ]:
            with self.subTest(why=why):
                rc, out = self.run_checker(text)
                self.assertEqual(rc, 1, out)
                self.assertIn("check_libs: ", out)


if __name__ == "__main__":
    BINARIES.update(find_binaries(sys.argv[1:]))
    unittest.main(argv=sys.argv[:1], verbosity=2)
