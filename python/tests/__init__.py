"""Unit and integration tests of the joule package and examples/jobs/digits_ddp.py.

Run from the repository root:
  python3 -m unittest discover -s python/tests -t python
"""
