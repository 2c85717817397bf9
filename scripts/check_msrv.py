#!/usr/bin/env python3
"""Checks that the crate's `rust-version` is no older than what any of its
dependencies (all features, build and normal, not dev) declare they need.

Run: python3 scripts/check_msrv.py   (CI runs it; clippy's incompatible_msrv lint
checks the crate's own use of the standard library against the same version.)
"""
import json
import subprocess
import sys


def version(text):
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--all-features"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    packages = {p["id"]: p for p in meta["packages"]}
    root = next(p for p in meta["packages"] if p["name"] == "zitadel-system-auth")
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    ours = version(root["rust_version"])
    seen, stack = set(), [root["id"]]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for dep in nodes[node]["deps"]:
            if any(kind["kind"] in (None, "build") for kind in dep["dep_kinds"]):
                stack.append(dep["pkg"])
    needs = sorted(
        (version(packages[i]["rust_version"]), packages[i]["name"])
        for i in seen
        if i != root["id"] and packages[i].get("rust_version")
    )
    newest, name = needs[-1]
    if newest > ours:
        print(f"rust-version {root['rust_version']} is older than {name} needs ({'.'.join(map(str, newest))})")
        return 1
    print(f"rust-version {root['rust_version']} covers every dependency (newest need: {name} {'.'.join(map(str, newest))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
