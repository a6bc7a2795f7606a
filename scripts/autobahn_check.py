#!/usr/bin/env python3
"""Compares an Autobahn|Testsuite report with the expected results.

Fails (exit 1) when any case's behaviour or close behaviour is not an
accepted outcome, or differs from the expected file in either direction:
a regression fails, and so does an improvement until the expected file is
updated (run with --update to rewrite it from the report).

    autobahn_check.py REPORT_INDEX_JSON EXPECTED_JSON AGENT [--update]
"""

import json
import sys

ACCEPTED = {"OK", "NON-STRICT", "INFORMATIONAL"}
ACCEPTED_CLOSE = {"OK", "INFORMATIONAL"}


def case_key(case):
    return [int(part) for part in case.split(".")]


def main():
    report_path, expected_path, agent = sys.argv[1:4]
    update = "--update" in sys.argv[4:]
    with open(report_path) as f:
        report = json.load(f)[agent]
    results = {
        case: {"behavior": r["behavior"], "behaviorClose": r["behaviorClose"]}
        for case, r in report.items()
    }
    if update:
        with open(expected_path, "w") as f:
            json.dump(dict(sorted(results.items(), key=lambda kv: case_key(kv[0]))), f, indent=1)
            f.write("\n")
    with open(expected_path) as f:
        expected = json.load(f)

    problems = []
    for case in sorted(set(results) | set(expected), key=case_key):
        got, want = results.get(case), expected.get(case)
        if got is None:
            problems.append(f"{case}: missing from the report")
            continue
        if got["behavior"] not in ACCEPTED or got["behaviorClose"] not in ACCEPTED_CLOSE:
            problems.append(f"{case}: {got['behavior']} / close {got['behaviorClose']}")
        elif got != want:
            problems.append(f"{case}: {got} differs from expected {want}")

    counts = {}
    for r in results.values():
        counts[r["behavior"]] = counts.get(r["behavior"], 0) + 1
    summary = ", ".join(f"{n} {b}" for b, n in sorted(counts.items()))
    print(f"autobahn {agent}: {len(results)} cases: {summary}")
    for problem in problems:
        print("  " + problem)
    if problems:
        print(f"{len(problems)} failed, {len(results) - len(problems)} passed")
        return 1
    print(f"{len(results)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
