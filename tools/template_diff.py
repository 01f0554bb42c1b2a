#!/usr/bin/env python3
"""What a change to template.yaml changes in what CloudFormation deploys.

    python3 tools/template_diff.py <old.yaml> <new.yaml>
    git show main:template.yaml > /tmp/old.yaml && python3 tools/template_diff.py /tmp/old.yaml template.yaml

Both templates are loaded (short-form intrinsics as {"Fn": value} mappings), so comments, key
order, quoting and flow-vs-block style do not count; every path whose value differs is printed,
with resources, parameters, conditions, rules and outputs compared by logical id. Exit status 1
when anything differs.
"""
import sys

import yaml


class Loader(yaml.SafeLoader):
    pass


def _tagged(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"!" + suffix: value}


Loader.add_multi_constructor("!", _tagged)


def load(path):
    with open(path) as f:
        return yaml.load(f, Loader)


def diff(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append(f"+ {path}/{k}: {short(b[k])}")
            elif k not in b:
                out.append(f"- {path}/{k}: {short(a[k])}")
            else:
                diff(a[k], b[k], f"{path}/{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"~ {path}:\n    old: {short(a)}\n    new: {short(b)}")


def short(v, n=300):
    s = repr(v)
    return s if len(s) <= n else s[:n] + f"... ({len(s)} chars)"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    out = []
    diff(load(sys.argv[1]), load(sys.argv[2]), "", out)
    print("\n".join(out) if out else "no difference in what is deployed")
    sys.exit(1 if out else 0)


if __name__ == "__main__":
    main()
