#!/usr/bin/env python3
"""Runs the guided lessons in docs/lessons/ on a lab of their own, so that what a lesson
says is what the lab does (test_lessons runs each one with --check).

    netns-tests/lessons.py LESSON.md            show the lesson's commands and their output
    netns-tests/lessons.py --check LESSON.md    ... and fail if an expectation does not hold

A lesson is Markdown. Its first line after the title may be a comment naming tunnat's
options for it: `<!-- tunnat: --udp-timeout 5 -->` (the lab's addresses, --control and
the port forward tcp:8888=192.168.122.73:9999 are always there). Its ```lesson blocks
hold what runs, one line each:

    lan$ CMD        run CMD on the inside hosts (ip netns exec lan CMD)
    wan$ CMD        on the outside hosts
    lan&$ CMD       start CMD on the inside hosts in the background (a server)
    host$ CMD       on the host, where `tunnat` is the lab's router's binary
    sleep N         wait N seconds
    ~ REGEX         the last command's output must match
    ! REGEX         ... and must not match

In the commands, `$CONTROL` is the lab's control socket and `$REPO` this repository.
"""

import os
import re
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

BASE = ["--dnat", "tcp:8888=192.168.122.73:9999", "--control", harness.CONTROL]


def parse(path):
    text = open(path).read()
    m = re.search(r"<!--\s*tunnat:(.*?)-->", text)
    args = shlex.split(m.group(1)) if m else []
    steps = []
    for block in re.findall(r"```lesson\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.strip():
                steps.append(line.rstrip())
    return args, steps


def run_lesson(path, check=False, out=print):
    args, steps = parse(path)
    lab = harness.Lab(extra_args=BASE + args)
    failures = []
    last = ""
    try:
        for step in steps:
            if step.startswith(("~ ", "! ")):
                want = step[0] == "~"
                found = re.search(step[2:], last, re.M) is not None
                if found != want:
                    failures.append(f"{step!r} does not hold for:\n{last}")
                    out(f"   FAILED: {step}")
                continue
            if step.startswith("sleep "):
                time.sleep(float(step.split()[1]))
                continue
            where, _, cmd = step.partition("$ ")
            cmd = cmd.replace("$CONTROL", lab.control_path).replace("$REPO", os.path.dirname(HERE))
            out(f"{where}$ {cmd}")
            env = dict(os.environ, PATH=f"{os.path.dirname(harness.TUNNAT)}:{os.environ['PATH']}")
            if where == "host":
                p = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=60, env=env)
                last = p.stdout + p.stderr
            elif where.endswith("&"):
                lab.spawn(where[:-1], ["sh", "-c", cmd])
                time.sleep(0.5)
                last = ""
            else:
                p = lab.sh(where, ["sh", "-c", cmd], timeout=60, check_rc=False)
                last = p.stdout + p.stderr
            for line in last.rstrip().splitlines()[:30]:
                out(f"    {line}")
    finally:
        lab.close()
    if check and failures:
        raise harness.Failure(f"{os.path.basename(path)}: " + "\n".join(failures))
    return failures


if __name__ == "__main__":
    a = sys.argv[1:]
    chk = "--check" in a
    files = [x for x in a if x != "--check"]
    bad = [f for f in files if run_lesson(f, check=False)]
    sys.exit(1 if chk and bad else 0)
