"""The lessons in docs/lessons/: each one's commands run on a lab of its own, and each
expectation it states must hold (netns-tests/lessons.py)."""

import os

import lessons

DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "lessons")


def _lesson(name):
    def test():
        lessons.run_lesson(os.path.join(DIR, name), check=True, out=lambda line: None)
    test.__name__ = "test_" + name[:-3].replace("-", "_")
    return test


for _f in sorted(os.listdir(DIR)):
    if _f[0].isdigit() and _f.endswith(".md"):
        globals()["test_" + _f[:-3].replace("-", "_")] = _lesson(_f)
