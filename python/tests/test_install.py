"""The package installs with pip from the checkout, offline.

Builds python/ into a fresh virtual environment (with the system's
site-packages, whose setuptools and wheel build it: nothing is downloaded)
and imports the installed copy from outside the checkout.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

PYTHON_DIR = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))


def _can_build() -> bool:
    try:
        import ensurepip  # noqa: F401  (venv needs it for pip)
        import setuptools  # noqa: F401
        import wheel  # noqa: F401
    except ImportError:
        return False
    return True


@unittest.skipUnless(_can_build(), "needs python3-venv, python3-setuptools and python3-wheel")
class PipInstallTest(unittest.TestCase):
    def test_installs_offline_and_imports_from_elsewhere(self):
        with tempfile.TemporaryDirectory() as tmp:
            venv = os.path.join(tmp, "venv")
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv],
                           check=True, capture_output=True)
            python = os.path.join(venv, "bin", "python")
            # A copy, so that the build leaves nothing in the checkout.
            source = os.path.join(tmp, "src")
            shutil.copytree(PYTHON_DIR, source,
                            ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
            env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
            install = subprocess.run(
                [python, "-m", "pip", "install", "--no-build-isolation", source],
                capture_output=True, text=True, env=env, cwd=tmp)
            self.assertEqual(install.returncode, 0, install.stdout + install.stderr)
            probe = subprocess.run(
                [python, "-c", "import joule, joule.contract; print(joule.__file__); "
                               "print(joule.contract.format_range_list({0, 1, 2, 5}))"],
                capture_output=True, text=True, cwd=tmp)
            self.assertEqual(probe.returncode, 0, probe.stderr)
            where, ranges = probe.stdout.split()
            self.assertTrue(where.startswith(venv), where)
            self.assertEqual(ranges, "0-2,5")


if __name__ == "__main__":
    unittest.main()
