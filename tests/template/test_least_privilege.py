"""Least privilege, proven: each function's role in template.yaml allows exactly what its crate calls.

For every AWS::Serverless::Function in the template (CodeUri crates/<crate>):

1. Derive the IAM actions the crate needs from source:
   - the AWS SDK operations it calls: `.operation_name()` on a client of a service whose
     aws-sdk-* crate the code's crate depends on (the operation names come from the aws-sdk-*
     sources cargo downloaded, so an operation missing from the mapping is reported, not missed);
   - the same for the workspace code the crate reaches: the library crates it depends on (atrest,
     and family libraries such as atrest-rds) and any other sibling crates, followed function by
     function from the names the crate calls (so a rule crate gets the rule runtime's
     config:PutEvaluations, a fix crate gets sns:Publish through the fix runtime, and only crates
     that call KeyResolver get kms:DescribeKey);
   - each operation mapped to its IAM action by tests/template/iam_actions.json;
   - plus the implicit actions that mapping file lists (an action AWS checks without an SDK call of
     ours: log delivery, KMS use behind SNS/RDS/EBS), each with its reason.
2. Collect the actions the function's role allows: its inline policies and every AWS::IAM::Policy
   attached to it. Managed policies and SAM policy templates are refused (they cannot be checked).
3. Compare: a missing action fails, an extra one fails.

Cross-checks: every `aws_error("<service:Action>", ...)` literal in the reached code must be among
the derived actions (the codebase names the IAM action of each call), and every derived action must
be named by one (so a wrong mapping entry shows up).

Limits, on purpose: call resolution is by name (a reached name pulls in every workspace function of
that name), test modules (`#[cfg(test)] mod`) are ignored, and a crate's own code counts entirely.
Functions passed by name without a call (fn pointers) are not followed.

Run: <venv>/bin/python tests/template/test_least_privilege.py   (check.sh does)
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
import tomllib
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
MAPPING = json.loads((ROOT / "tests/template/iam_actions.json").read_text())
LIBRARY = "atrest"

# ------------------------------------------------------------------------------ Rust sources
_TEST_MODULE = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")
_FN = re.compile(r"\bfn\s+([a-z_][a-z0-9_]*)\b")
_CALL = re.compile(r"\b([a-z_][a-z0-9_]*)\s*(?:::\s*<[^<>()]*>\s*)?\(")
_SDK_CALL = re.compile(r"\.\s*([a-z][a-z0-9_]*)\s*\(\s*\)")
_AWS_ERROR = re.compile(r"aws_error\(\s*\"([a-z0-9-]+:[A-Za-z0-9*]+)\"")


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    # Line comments, but not "//" inside string literals such as URLs.
    out = []
    for line in text.splitlines():
        in_string = False
        cut = len(line)
        i = 0
        while i < len(line) - 1:
            c = line[i]
            if c == "\\" and in_string:
                i += 2
                continue
            if c == '"':
                in_string = not in_string
            elif not in_string and line.startswith("//", i):
                cut = i
                break
            i += 1
        out.append(line[:cut])
    return "\n".join(out)


def _matching_brace(text: str, open_at: int) -> int:
    depth = 0
    i = open_at
    in_string = False
    while i < len(text):
        c = text[i]
        if in_string:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "'" and i + 2 < len(text) and text[i + 2] == "'":
            i += 3  # a char literal such as '{'
            continue
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return len(text) - 1


def production_source(path: Path) -> str:
    """The file without comments and without its test modules."""
    text = _strip_comments(path.read_text())
    while (m := _TEST_MODULE.search(text)) is not None:
        end = _matching_brace(text, m.end() - 1)
        text = text[: m.start()] + text[end + 1 :]
    return text


class Crate:
    def __init__(self, directory: Path):
        self.dir = directory
        manifest = tomllib.loads((directory / "Cargo.toml").read_text())
        self.name = manifest["package"]["name"]
        deps = manifest.get("dependencies", {})
        self.services = {d.removeprefix("aws-sdk-") for d in deps if d.startswith("aws-sdk-")}
        self.workspace_deps = {d for d in deps if (ROOT / "crates" / d / "Cargo.toml").is_file()}
        # A library crate (atrest, atrest-rds, ...) has no binary: no Lambda entry point.
        self.is_library = not (directory / "src" / "main.rs").is_file() and "bin" not in manifest
        self.files = {p: production_source(p) for p in sorted(directory.glob("src/**/*.rs"))}
        self.source = "\n".join(self.files.values())
        # name -> bodies (every fn of that name: free functions, methods, trait defaults)
        self.functions: dict[str, list[str]] = {}
        for text in self.files.values():
            for m in _FN.finditer(text):
                rest = text[m.end() :]
                body_open = re.search(r"[{;]", rest)
                if body_open is None or body_open.group() == ";":
                    continue
                start = m.end() + body_open.start()
                end = _matching_brace(text, start)
                self.functions.setdefault(m.group(1), []).append(text[start : end + 1])


def _sdk_operations() -> dict[str, set[str]]:
    """Every operation of each aws-sdk-* crate in Cargo.lock, from the sources cargo downloaded."""
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    operations: dict[str, set[str]] = {}
    for package in lock["package"]:
        name = package["name"]
        if not name.startswith("aws-sdk-"):
            continue
        found = glob.glob(str(cargo_home / "registry/src/*" / f"{name}-{package['version']}" / "src/operation"))
        service = name.removeprefix("aws-sdk-")
        if found:
            operations[service] = {p.removesuffix(".rs") for p in os.listdir(found[0]) if p.endswith(".rs")}
        else:
            # No downloaded sources (cargo never built here): fall back to the mapping's names.
            # Run `cargo fetch` for the full check.
            print(f"note: sources of {name} {package['version']} not found; using the mapping's operations only")
            operations[service] = set(MAPPING["operations"].get(service, {}))
    return operations


SDK_OPERATIONS = _sdk_operations()
CRATES = {c.name: c for c in (Crate(p.parent) for p in sorted((ROOT / "crates").glob("*/Cargo.toml")))}


def _sdk_calls(text: str, services: set[str]) -> set[tuple[str, str]]:
    calls = set()
    named = set(_AWS_ERROR.findall(text))
    for m in _SDK_CALL.finditer(text):
        candidates = {s for s in services if m.group(1) in SDK_OPERATIONS.get(s, ())}
        # An operation name two of the crate's services share (ec2 and autoscaling both have
        # delete_tags): the one whose IAM action the code names in aws_error(...) is the call.
        if len(candidates) > 1:
            chosen = {s for s in candidates if MAPPING["operations"].get(s, {}).get(m.group(1)) in named}
            candidates = chosen or candidates
        calls.update((service, m.group(1)) for service in candidates)
    return calls


def _module_functions(dep: Crate, path: list[str]) -> set[str]:
    """Names of the functions defined in one module file of a crate (`a::b` -> src/a/b.rs)."""
    base = dep.dir / "src" / Path(*path) if path else dep.dir / "src" / "lib"
    names: set[str] = set()
    for candidate in (base.with_suffix(".rs"), base / "mod.rs"):
        if candidate in dep.files:
            names.update(_FN.findall(dep.files[candidate]))
    return names


def imported_names(code: str, dep: Crate) -> set[str]:
    """What `code` takes from sibling crate `dep`: `use dep::{a, b}`, `use dep::m::*`, `dep::m::f(`."""
    ident = dep.name.replace("-", "_")
    names: set[str] = set()
    for m in re.finditer(rf"\buse\s+{ident}((?:::\w+)*)::(\*|\{{[^}}]*\}}|\w+)\s*;", code):
        path = [p for p in m.group(1).split("::") if p]
        items = m.group(2)
        if items == "*":
            names |= _module_functions(dep, path)
        else:
            for item in re.findall(r"\w+(?:::\w+)*(?:::\*)?", items.strip("{}")):
                if item.endswith("::*"):
                    names |= _module_functions(dep, path + item[:-3].split("::"))
                else:
                    names.add(item.split("::")[-1])
    names.update(re.findall(rf"\b{ident}(?:::\w+)*::(\w+)\s*(?:::\s*<[^<>()]*>\s*)?\(", code))
    return names


def reached_code(crate: Crate) -> list[tuple[Crate, str]]:
    """(crate, code) pairs: the crate's own code, then every workspace function it reaches.

    A crate's own code counts entirely. From there, names it calls are followed into the library
    crates it depends on, directly or through another library (any function of that name), and
    into other sibling crates only where it imports them by name, by module glob or by path, so
    that trait methods of the same name in a sibling (judge, reconcile, fetch_item) are not
    mistaken for calls into it.
    """
    libraries: list[Crate] = []
    frontier = [LIBRARY, *sorted(crate.workspace_deps)]
    while frontier:
        dep = CRATES[frontier.pop(0)]
        if dep.is_library and dep not in libraries:
            libraries.append(dep)
            frontier.extend(sorted(dep.workspace_deps))
    reached: list[tuple[Crate, str]] = [(crate, crate.source)]
    seen: set[tuple[str, str]] = set()
    # (name, crate the name is looked up in)
    pending: list[tuple[str, Crate]] = []

    def follow(code: str, owner: Crate) -> None:
        calls = set(_CALL.findall(code))
        for library in libraries:
            pending.extend((name, library) for name in calls)
        if owner not in libraries:
            if owner is not crate:
                pending.extend((name, owner) for name in calls)
            for dep_name in owner.workspace_deps:
                dep = CRATES[dep_name]
                if dep in libraries:
                    continue
                # Imported and called (an import alone reaches nothing).
                pending.extend((name, dep) for name in imported_names(code, dep) & calls)

    follow(crate.source, crate)
    while pending:
        name, where = pending.pop()
        if (where.name, name) in seen or name not in where.functions:
            continue
        seen.add((where.name, name))
        for body in where.functions[name]:
            reached.append((where, body))
            follow(body, where)
    return reached


def derive(crate: Crate) -> tuple[dict[str, str], set[str], list[str]]:
    """Actions the crate needs ({action: why}), the aws_error actions it names, and problems."""
    needed: dict[str, str] = {}
    named: set[str] = set()
    problems: list[str] = []
    for owner, code in reached_code(crate):
        named.update(_AWS_ERROR.findall(code))
        for service, operation in sorted(_sdk_calls(code, owner.services)):
            table = MAPPING["operations"].get(service, {})
            if operation not in table:
                problems.append(
                    f"{owner.name} calls {service} {operation}(), which tests/template/iam_actions.json does not map"
                )
                continue
            action = table[operation]
            if action is None:  # an operation that needs no permission (sts:GetCallerIdentity)
                continue
            via = "" if owner is crate else f" (through {owner.name})"
            needed.setdefault(action, f"{service}::{operation}(){via}")
    for action, why in list(needed.items()):
        for implied, spec in MAPPING["implicit"]["implied_by"].get(action, {}).items():
            needed.setdefault(implied, f"implied by {action}: {spec}")
    for implied, reason in MAPPING["implicit"]["every_function"].items():
        needed.setdefault(implied, reason)
    free = {a for ops in MAPPING["operations"].values() for a in ops.values() if a is not None}
    no_permission = set(MAPPING.get("no_permission_needed", {}))
    for action in sorted(named - set(needed) - no_permission):
        problems.append(
            f"{crate.name}: code reached from it names {action} in aws_error(...) but no SDK call mapping to it was found"
        )
    for action in sorted(a for a in needed if a in free and a not in named and not _is_implicit(a)):
        problems.append(
            f"{crate.name}: {action} is derived from an SDK call, but no reached aws_error(...) names it; check the mapping"
        )
    return needed, named, problems


def _is_implicit(action: str) -> bool:
    if action in MAPPING["implicit"]["every_function"]:
        return True
    return any(action in implied for implied in MAPPING["implicit"]["implied_by"].values())


# -------------------------------------------------------------------------------- template
TEMPLATE, _matches = decode(str(ROOT / "template.yaml"))
assert not _matches, _matches
RESOURCES: dict = TEMPLATE["Resources"]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _ref_target(value) -> str | None:
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            return att[0] if isinstance(att, list) else att.split(".")[0]
    return None


def _branches(items) -> list[dict]:
    """List items with every Fn::If expanded to its branches (AWS::NoValue dropped)."""
    out = []
    for item in _as_list(items):
        if isinstance(item, dict) and "Fn::If" in item:
            out.extend(_branches(item["Fn::If"][1:]))
        elif isinstance(item, dict) and item != {"Ref": "AWS::NoValue"}:
            out.append(item)
    return out


def _statements(document) -> list[dict]:
    """Allow statements of a policy document; both branches of an Fn::If count."""
    return [s for s in _branches(document.get("Statement", [])) if s.get("Effect") == "Allow"]


def role_actions(role_id: str) -> tuple[set[str], list[str]]:
    role = RESOURCES[role_id]
    problems = []
    props = role["Properties"]
    if props.get("ManagedPolicyArns"):
        problems.append(f"{role_id}: managed policies cannot be checked for least privilege")
    statements = [s for p in _branches(props.get("Policies", [])) for s in _statements(p["PolicyDocument"])]
    for name, resource in RESOURCES.items():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            roles = {_ref_target(r) for r in _as_list(resource["Properties"].get("Roles", []))}
            if role_id in roles:
                statements.extend(_statements(resource["Properties"]["PolicyDocument"]))
    actions = set()
    for statement in statements:
        if "NotAction" in statement:
            problems.append(f"{role_id}: NotAction cannot be checked for least privilege")
        for action in _as_list(statement.get("Action", [])):
            if isinstance(action, dict) and "Fn::If" in action:
                actions.update(a for branch in action["Fn::If"][1:] for a in _as_list(branch) if isinstance(a, str))
            elif isinstance(action, str):
                actions.add(action)
            else:
                problems.append(f"{role_id}: cannot read action {action!r}")
    return actions, problems


def functions() -> dict[str, tuple[str, str]]:
    """Logical id -> (crate name, role logical id) for every function of the template."""
    out = {}
    for name, resource in RESOURCES.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        crate = tomllib.loads((ROOT / props["CodeUri"] / "Cargo.toml").read_text())["package"]["name"]
        out[name] = (crate, _ref_target(props.get("Role")))
    return out


# ----------------------------------------------------------------------------------- tests
def _compare(function_id: str, crate_name: str, role_id: str | None) -> list[str]:
    fn = RESOURCES[function_id]["Properties"]
    if role_id is None or "Policies" in fn:
        return [f"{function_id}: use Role with an AWS::IAM::Role; SAM Policies/policy templates cannot be checked"]
    needed, _, problems = derive(CRATES[crate_name])
    allowed, role_problems = role_actions(role_id)
    problems += role_problems
    for action in sorted(set(needed) - allowed):
        problems.append(f"{function_id} ({crate_name}): role {role_id} lacks {action} - needed by {needed[action]}")
    for action in sorted(allowed - set(needed)):
        problems.append(f"{function_id} ({crate_name}): role {role_id} allows {action}, which the crate never needs")
    return problems


def test_every_function_role_allows_exactly_what_its_crate_calls():
    problems = []
    for function_id, (crate, role_id) in functions().items():
        problems += _compare(function_id, crate, role_id)
    assert not problems, "\n  " + "\n  ".join(problems)


def test_each_function_has_its_own_role():
    roles: dict[str, str] = {}
    for function_id, (_, role_id) in functions().items():
        assert role_id not in roles, f"{function_id} shares role {role_id} with {roles.get(role_id)}"
        roles[role_id] = function_id


def test_no_function_crate_depends_on_another():
    # Shared code lives in library crates (atrest, atrest-rds, ...), so each function's crate and
    # its role stay its own.
    deployed = {crate for crate, _ in functions().values()}
    problems = [
        f"{name} depends on {dep}, another function's crate: move what they share into a library crate"
        for name in sorted(deployed)
        for dep in sorted(CRATES[name].workspace_deps & deployed)
    ]
    assert not problems, "\n".join(problems)


def test_comparison_catches_a_missing_and_an_extra_action():
    # The comparison itself, on a copy of a real role: drop one needed action, add one unneeded.
    import copy

    function_id, (crate, role_id) = next(iter(functions().items()))
    saved = copy.deepcopy(RESOURCES[role_id])
    try:
        needed = derive(CRATES[crate])[0]
        dropped = sorted(a for a in needed if not a.startswith("logs:"))[0]
        for policy in _branches(RESOURCES[role_id]["Properties"]["Policies"]):
            for statement in _statements(policy["PolicyDocument"]):
                actions = [a for a in _as_list(statement["Action"]) if a != dropped]
                statement["Action"] = actions or ["logs:PutLogEvents"]
        RESOURCES[role_id]["Properties"]["Policies"].append(
            {"PolicyName": "Extra", "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "s3:DeleteBucket", "Resource": "*"}]}}
        )
        problems = "\n".join(_compare(function_id, crate, role_id))
    finally:
        RESOURCES[role_id] = saved
    # The dropped action may also come from an AWS::IAM::Policy attached to the role.
    attached = set()
    for resource in RESOURCES.values():
        if resource["Type"] == "AWS::IAM::Policy" and role_id in {_ref_target(r) for r in _as_list(resource["Properties"].get("Roles", []))}:
            attached.update(a for st in _statements(resource["Properties"]["PolicyDocument"]) for a in _as_list(st["Action"]))
    assert dropped in attached or f"lacks {dropped}" in problems, problems
    assert "allows s3:DeleteBucket" in problems, problems


def test_mapping_file_is_well_formed():
    for service, table in MAPPING["operations"].items():
        assert service in SDK_OPERATIONS, f"iam_actions.json maps service {service}, which no crate links"
        for operation, action in table.items():
            assert operation in SDK_OPERATIONS[service], f"{service} has no operation {operation}"
            assert action is None or re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), action
            if action is None:
                assert f"{service}:" in " ".join(MAPPING["no_permission_needed"]), operation
    for action, implied in MAPPING["implicit"]["implied_by"].items():
        for implied_action, reason in implied.items():
            assert isinstance(reason, str) and len(reason) > 20, f"{action} -> {implied_action}: give the reason"
    for action, reason in MAPPING["implicit"]["every_function"].items():
        assert isinstance(reason, str) and len(reason) > 20, action


def test_derivation_sees_the_runtime_calls():
    # Guards the derivation itself: a rule reaches PutEvaluations through the library's runner,
    # a fix reaches sns:Publish through the fix runner, and KeyResolver users reach DescribeKey.
    rules = [c for c in CRATES if c.startswith("rule-")]
    fixes = [c for c in CRATES if c.startswith("fix-")]
    assert rules and fixes
    for name in rules:
        needed = derive(CRATES[name])[0]
        assert {"config:PutEvaluations", "config:GetResourceConfigHistory"} <= set(needed), name
        assert "sns:Publish" not in needed, name
    for name in fixes:
        needed = derive(CRATES[name])[0]
        assert "sns:Publish" in needed and "config:PutEvaluations" not in needed, name
        uses_keys = re.search(r"\.\s*(key_arn|is_one_of)\s*\(", CRATES[name].source) is not None
        if uses_keys:
            assert "kms:DescribeKey" in needed, name


def report() -> None:
    """python test_least_privilege.py --report: the derived actions of every crate."""
    for name, crate in sorted(CRATES.items()):
        if not (name.startswith("rule-") or name.startswith("fix-")):
            continue
        needed, _, problems = derive(crate)
        print(f"{name}:")
        for action in sorted(needed):
            print(f"  {action:45} {needed[action]}")
        for p in problems:
            print(f"  PROBLEM {p}")


if __name__ == "__main__":
    if "--report" in sys.argv:
        report()
        sys.exit(0)
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    failed = 0
    for test_name, test in tests:
        try:
            test()
            print(f"ok   {test_name}")
        except Exception as error:
            failed += 1
            print(f"FAIL {test_name}: {type(error).__name__}: {error}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
