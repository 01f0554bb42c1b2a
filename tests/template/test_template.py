"""Structural checks on template.yaml that cfn-lint cannot make.

cfn-lint validates resource schemas, but not the SSM Automation document inside a resource, the
wiring between a rule, its remediation and its document, or the worker contract. These tests do,
and they run the document's control flow against scripted worker answers.

Run with the tools venv (cfn-lint provides the YAML loader for !Ref/!Sub/...):
    <venv>/bin/python tests/template/test_template.py      # or: <venv>/bin/pytest tests/template
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
import tomllib
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"

# The fixed worker contract (see the header of template.yaml).
WORKER_REQUEST_KEYS = {"ResourceId", "DryRun", "ExecutionId"}
WORKER_STATUSES = {"InProgress", "Succeeded", "Failed"}
INVOKE_LAMBDA_CAP_SECONDS = 300


def _load_template() -> dict:
    template, matches = decode(str(TEMPLATE_PATH))
    assert not matches, f"template.yaml does not parse: {matches}"
    return template


TEMPLATE = _load_template()
RESOURCES: dict = TEMPLATE["Resources"]
GLOBAL_FUNCTION: dict = TEMPLATE.get("Globals", {}).get("Function", {})


def resources_of(kind: str) -> dict:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def ref_target(value) -> str | None:
    """Logical id behind {"Ref": x} or {"Fn::GetAtt": [x, ...]}."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            return att[0] if isinstance(att, list) else att.split(".")[0]
    return None


def roster_targets(items) -> set:
    """Logical ids in a roster list; an entry of a conditional block is `!If [c, x, AWS::NoValue]`."""
    targets = set()
    for item in _as_list(items):
        if isinstance(item, dict) and "Fn::If" in item:
            _, present, absent = item["Fn::If"]
            assert absent == {"Ref": "AWS::NoValue"}, item
            item = present
        targets.add(ref_target(item))
    return targets


def sub_text(value) -> str:
    assert isinstance(value, dict) and "Fn::Sub" in value, f"expected !Sub, got {value!r}"
    sub = value["Fn::Sub"]
    return sub if isinstance(sub, str) else sub[0]


def function_property(function: dict, key: str):
    return function["Properties"].get(key, GLOBAL_FUNCTION.get(key))


def documents() -> dict:
    """The Automation documents (the reconciler loops). Command documents run on instances."""
    return {n: d for n, d in resources_of("AWS::SSM::Document").items() if d["Properties"]["DocumentType"] == "Automation"}


def steps_by_name(document: dict) -> dict:
    return {s["name"]: s for s in document["Properties"]["Content"]["mainSteps"]}


# --------------------------------------------------------------------------------- functions
def test_functions_are_rust_arm64_al2023_and_point_at_real_binaries():
    functions = resources_of("AWS::Serverless::Function")
    assert functions, "no functions"
    for name, fn in functions.items():
        assert function_property(fn, "Runtime") == "provided.al2023", name
        assert function_property(fn, "Architectures") == ["arm64"], name
        assert function_property(fn, "Handler") == "bootstrap", name
        assert function_property(fn, "Timeout") <= INVOKE_LAMBDA_CAP_SECONDS, name
        assert fn["Metadata"]["BuildMethod"] == "rust-cargolambda", name
        binary = fn["Metadata"]["BuildProperties"]["Binary"]
        code_uri = fn["Properties"]["CodeUri"]
        manifest = ROOT / code_uri / "Cargo.toml"
        assert manifest.is_file(), f"{name}: CodeUri {code_uri} has no Cargo.toml"
        crate = tomllib.loads(manifest.read_text())
        bins = {b["name"] for b in crate.get("bin", [])} or {crate["package"]["name"]}
        assert binary in bins, f"{name}: Binary {binary} is not a bin of {code_uri} ({bins})"
        assert sub_text(fn["Properties"]["FunctionName"]) == "${RuleNamePrefix}" + binary, name
        workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]
        # Members may be globs (`crates/*`), as cargo reads them: `*` stays within one folder.
        member = any(fnmatch.fnmatchcase(code_uri, m) and code_uri.count("/") == m.count("/") for m in workspace["members"])
        assert member and code_uri not in workspace.get("exclude", []), f"{name}: {code_uri} is not a workspace member"


def test_each_function_logs_to_its_own_log_group_with_retention():
    for name, fn in resources_of("AWS::Serverless::Function").items():
        logging = fn["Properties"]["LoggingConfig"]
        group_id = ref_target(logging["LogGroup"])
        group = RESOURCES[group_id]
        assert group["Type"] == "AWS::Logs::LogGroup", name
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}, name
        assert sub_text(group["Properties"]["LogGroupName"]) == "/aws/lambda/" + sub_text(
            fn["Properties"]["FunctionName"]
        ), name
        role = RESOURCES[ref_target(fn["Properties"]["Role"])]
        log_statements = [
            s
            for p in role["Properties"]["Policies"]
            for s in p["PolicyDocument"]["Statement"]
            if "logs:PutLogEvents" in _as_list(s["Action"])
        ]
        assert log_statements and all(
            ref_target(s["Resource"]) == group_id for s in log_statements
        ), f"{name}: may write logs outside its own group"


# ----------------------------------------------------------------------------------- rules
def test_custom_rules_are_change_and_periodic_triggered_and_invocable_by_config_only():
    permissions = resources_of("AWS::Lambda::Permission")
    for name, rule in resources_of("AWS::Config::ConfigRule").items():
        props = rule["Properties"]
        assert sub_text(props["ConfigRuleName"]).startswith("${RuleNamePrefix}"), name
        source = props["Source"]
        assert source["Owner"] == "CUSTOM_LAMBDA", name
        function_id = ref_target(source["SourceIdentifier"])
        message_types = {d["MessageType"] for d in source["SourceDetails"]}
        if "Scope" not in props:
            # Account-level settings (AWS::::Account) are no recorded resource: periodic only.
            assert message_types == {"ScheduledNotification"}, name
        else:
            assert message_types == {
                "ConfigurationItemChangeNotification",
                "OversizedConfigurationItemChangeNotification",
                "ScheduledNotification",
            }, name
        for detail in source["SourceDetails"]:
            assert detail["EventSource"] == "aws.config", name
            if detail["MessageType"] == "ScheduledNotification":
                assert detail["MaximumExecutionFrequency"] == {"Ref": "PeriodicEvaluationFrequency"}
        depends = _as_list(rule.get("DependsOn", []))
        granting = [
            p
            for p in depends
            if p in permissions and ref_target(permissions[p]["Properties"]["FunctionName"]) == function_id
        ]
        assert granting, f"{name} does not depend on a permission for {function_id}"
        perm = permissions[granting[0]]["Properties"]
        assert perm["Principal"] == "config.amazonaws.com", name
        assert perm["SourceAccount"] == {"Ref": "AWS::AccountId"}, name


def test_rule_parameters_are_never_blank():
    # AWS Config rejects blank parameter values: a value is either left out when empty, or comes
    # from a stack parameter whose AllowedPattern refuses "".
    for name, rule in resources_of("AWS::Config::ConfigRule").items():
        for key, value in rule["Properties"].get("InputParameters", {}).items():
            if isinstance(value, dict) and "Fn::If" in value:
                condition, _, otherwise = value["Fn::If"]
                assert otherwise == {"Ref": "AWS::NoValue"}, f"{name}.{key}"
                assert condition in TEMPLATE["Conditions"], f"{name}.{key}"
            else:
                parameter = TEMPLATE["Parameters"][ref_target(value)]
                pattern = parameter.get("AllowedPattern")
                assert pattern and re.fullmatch(pattern, "") is None, f"{name}.{key} may be blank"
                assert re.fullmatch(pattern, parameter["Default"]), f"{name}.{key} default"


# ---------------------------------------------------------------------------- remediation
def test_remediation_parameters_match_the_document():
    for name, remediation in resources_of("AWS::Config::RemediationConfiguration").items():
        props = remediation["Properties"]
        assert props["TargetType"] == "SSM_DOCUMENT", name
        assert props["TargetVersion"] == "$DEFAULT", name
        assert ref_target(props["ConfigRuleName"]) in resources_of("AWS::Config::ConfigRule"), name
        document = RESOURCES[ref_target(props["TargetId"])]
        declared = document["Properties"]["Content"]["parameters"]
        given = props["Parameters"]
        assert set(given) <= set(declared), f"{name}: unknown {set(given) - set(declared)}"
        required = {p for p, spec in declared.items() if "default" not in spec}
        assert required <= set(given), f"{name}: missing {required - set(given)}"
        assert given["ResourceId"] == {"ResourceValue": {"Value": "RESOURCE_ID"}}, name
        assert ref_target(given["AutomationAssumeRole"]["StaticValue"]["Values"][0]) == "AutomationRole"
        automatic = props["Automatic"]
        assert isinstance(automatic, bool) or (
            automatic["Fn::If"][1:] == [True, False] and automatic["Fn::If"][0] in TEMPLATE["Conditions"]
        ), name
        # Optional values must be omittable rather than sent blank.
        for key, value in given.items():
            if isinstance(value, dict) and "Fn::If" in value:
                assert value["Fn::If"][2] == {"Ref": "AWS::NoValue"}, f"{name}.{key}"
                assert "default" in declared[key], f"{name}.{key} may be omitted but has no default"


# AWS::Config::RemediationConfiguration: MaximumAutomaticAttempts 1-25, RetryAttemptSeconds
# 1-2,678,000. Config adds a remediation exception (stops retrying) only after
# MaximumAutomaticAttempts failures *within* RetryAttemptSeconds, so the window must outlast that
# many failed runs. Quick fixes run for seconds; the copy fixes for minutes to many hours.
DAY = 86_400
# Remediations whose runs take seconds (a setting changed and read back); every other one copies data.
QUICK_FIXES = {
    "S3BucketServerSideEncryptionEnabledRemediation",
    "S3DefaultEncryptionKmsRemediation",
    "S3BucketSslRequestsOnlyRemediation",
    "Ec2EbsEncryptionByDefaultRemediation",
    "KinesisStreamEncryptedRemediation",
    "KinesisFirehoseDeliveryStreamEncryptedRemediation",
    "DynamodbTableEncryptedKmsRemediation",
    "CmkBackingKeyRotationEnabledRemediation",
    "SnsEncryptedKmsRemediation",
    "SqsQueueEncryptedRemediation",
}


def test_automatic_retries_stop_within_a_window_sized_to_the_runs():
    remediations = resources_of("AWS::Config::RemediationConfiguration")
    assert QUICK_FIXES < set(remediations)
    for name, remediation in remediations.items():
        props = remediation["Properties"]
        attempts = TEMPLATE["Parameters"][ref_target(props["MaximumAutomaticAttempts"])]
        assert 1 <= attempts["MinValue"] and attempts["MaxValue"] <= 25, name
        window = TEMPLATE["Parameters"][ref_target(props["RetryAttemptSeconds"])]
        assert window["MaxValue"] <= 2_678_000, name
        # Even the shortest window a deployer may choose outlasts the runs it counts.
        default, minimum = (DAY, 3_600) if name in QUICK_FIXES else (7 * DAY, DAY)
        assert int(window["Default"]) >= default and window["MinValue"] >= minimum, (name, window)


def test_documents_have_no_fixed_name_and_the_prefix_avoids_ssm_reserved_names():
    # With UpdateMethod NewVersion the SSM document handler cannot rename a document, so a Name
    # built from RuleNamePrefix would make the prefix unchangeable on an existing stack.
    for name, document in resources_of("AWS::SSM::Document").items():
        assert "Name" not in document["Properties"], name
        assert ref_target(TEMPLATE["Outputs"][name + "Name"]["Value"]) == name, f"{name}: no output names it"
    prefix = TEMPLATE["Parameters"]["RuleNamePrefix"]
    pattern = prefix["AllowedPattern"]
    assert re.fullmatch(pattern, prefix["Default"])
    # SSM CreateDocument: names may not start with aws, amazon, amzn, AWSEC2, AWSConfigRemediation
    # or AWSSupport.
    for reserved in ["aws-", "AWS", "Aws1", "amazon-", "Amazon", "amzn", "AMZN-x", "AWSEC2-", "AWSConfigRemediation", "AWSSupport"]:
        assert re.fullmatch(pattern, reserved) is None, reserved
    for fine in ["atrest-", "a", "am", "amaz", "aw", "awake", "secure-", "x" * 16]:
        assert re.fullmatch(pattern, fine), fine
    for bad in ["", "-x", "1x", "x" * 17, "a_b"]:
        assert re.fullmatch(pattern, bad) is None, bad


def test_documents_are_the_reconciler_loop():
    assert documents(), "no SSM documents"
    for name, document in documents().items():
        props = document["Properties"]
        assert props["DocumentType"] == "Automation", name
        assert props["UpdateMethod"] == "NewVersion", name
        content = props["Content"]
        assert content["schemaVersion"] == "0.3", name
        assert content["assumeRole"] == "{{ AutomationAssumeRole }}", name
        assert content["outputs"] == ["Answer.Status", "Answer.Message"], name
        steps = steps_by_name(document)
        # A resumable document (a long fix: its worker hands each turn a continuation point)
        # keeps that point in a runbook variable between turns.
        resumable = "variables" in content
        if resumable:
            assert list(steps) == ["Invoke", "Answer", "Decide", "Wait", "Remember", "Succeeded", "Fail"], name
            assert content["variables"] == {
                "Resume": {"type": "String", "default": "start", "description": content["variables"]["Resume"]["description"]}
            }, name
            remember = steps["Remember"]
            assert remember["action"] == "aws:updateVariable" and remember["nextStep"] == "Invoke", name
            assert remember["inputs"] == {"Name": "variable:Resume", "Value": "{{ Answer.Resume }}"}, name
        else:
            assert list(steps) == ["Invoke", "Answer", "Decide", "Wait", "Succeeded", "Fail"], name

        invoke = steps["Invoke"]
        assert invoke["action"] == "aws:invokeLambdaFunction", name
        assert invoke["timeoutSeconds"] <= INVOKE_LAMBDA_CAP_SECONDS, name
        worker = ref_target(invoke["inputs"]["FunctionName"])
        assert RESOURCES[worker]["Type"] == "AWS::Serverless::Function", name
        payload = invoke["inputs"]["InputPayload"]
        assert WORKER_REQUEST_KEYS <= set(payload), f"{name}: request lacks {WORKER_REQUEST_KEYS - set(payload)}"
        assert payload["ExecutionId"] == "{{ automation:EXECUTION_ID }}", name
        for key, value in payload.items():
            assert isinstance(value, str), f"{name}: InputPayload.{key} must be a string"
            if key == "Resume":
                assert resumable and value == "{{ variable:Resume }}", name
            elif key != "ExecutionId":
                assert value == "{{ %s }}" % key and key in content["parameters"], f"{name}.{key}"
        # Payload is a string: the Answer step parses it (see test_documents_use_only_documented_outputs).
        assert "outputs" not in invoke, name
        answer = steps["Answer"]
        assert answer["action"] == "aws:executeScript" and answer["inputs"]["Handler"] == "read_answer", name
        assert answer["inputs"]["InputPayload"] == {"Payload": "{{ Invoke.Payload }}"}, name
        assert {o["Name"]: o["Selector"] for o in answer["outputs"]} == {
            "Status": "$.Payload.Status",
            "Message": "$.Payload.Message",
        } | ({"Resume": "$.Payload.Resume"} if resumable else {}), name

        decide = steps["Decide"]
        assert decide["action"] == "aws:branch", name
        routes = {c["StringEquals"]: c["NextStep"] for c in decide["inputs"]["Choices"]}
        assert all(c["Variable"] == "{{ Answer.Status }}" for c in decide["inputs"]["Choices"]), name
        assert routes == {"Succeeded": "Succeeded", "InProgress": "Wait"}, name
        assert set(routes) | {"Failed"} == WORKER_STATUSES, name
        assert decide["inputs"]["Default"] == "Fail", name
        assert steps["Wait"]["action"] == "aws:sleep", name
        assert steps["Wait"]["nextStep"] == ("Remember" if resumable else "Invoke"), name
        assert steps["Succeeded"]["isEnd"] is True, name
        assert steps["Fail"]["action"] == "aws:executeScript" and steps["Fail"]["isEnd"] is True, name
        assert steps["Fail"]["inputs"]["Runtime"] == "python3.11", name
    # One Answer and one Fail script for all: the local runner knows them by their exact text.
    for step in ("Answer", "Fail"):
        scripts = {steps_by_name(d)[step]["inputs"]["Script"] for d in documents().values()}
        assert len(scripts) == 1, f"the {step} scripts differ between documents"


# The outputs AWS documents per action. aws:invokeLambdaFunction: StatusCode, FunctionError,
# LogResult and Payload, where Payload is a string ("the JSON representation of the object
# returned by the Lambda function"); FunctionError and LogResult exist only after a function
# error or with LogType Tail, so only Payload and StatusCode are referenced. aws:executeScript:
# the handler's return value, selectable as $.Payload.<key>. aws:branch and aws:sleep: none.
INVOKE_LAMBDA_OUTPUTS = {"Payload": "$.Payload", "StatusCode": "$.StatusCode"}


def test_documents_use_only_documented_outputs():
    for name, document in documents().items():
        content = document["Properties"]["Content"]
        available = {}
        for step in content["mainSteps"]:
            declared = {o["Name"]: o["Selector"] for o in step.get("outputs", [])}
            if step["action"] == "aws:invokeLambdaFunction":
                assert set(declared.values()) <= set(INVOKE_LAMBDA_OUTPUTS.values()), (name, step["name"], declared)
                available[step["name"]] = set(INVOKE_LAMBDA_OUTPUTS) | set(declared)
            elif step["action"] == "aws:executeScript":
                assert all(re.fullmatch(r"\$\.Payload\.\w+", sel) for sel in declared.values()), (name, declared)
                available[step["name"]] = set(declared)
            else:
                assert not declared, (name, step["name"])
                available[step["name"]] = set()
        # aws:updateVariable (no outputs) sets a declared runbook variable; {{ variable:X }}
        # reads one.
        for variable in re.findall(r"\{\{\s*variable:(\w+)\s*\}\}", json.dumps(content["mainSteps"])):
            assert variable in content.get("variables", {}), f"{name}: no runbook variable {variable}"
        references = re.findall(r"\{\{\s*(\w+)\.(\w+)\s*\}\}", json.dumps(content["mainSteps"]))
        references += [tuple(o.split(".")) for o in content["outputs"]]
        for step, output in references:
            assert output in available.get(step, set()), f"{name}: {{{{ {step}.{output} }}}} is no documented output"


def test_documents_tell_whoever_runs_them_by_hand_about_pass_role():
    # A run started by hand assumes the document's default AutomationAssumeRole, which the
    # caller must be allowed to pass (iam:PassRole); Config's own runs need nothing of the user.
    for name, document in documents().items():
        content = document["Properties"]["Content"]
        assert ref_target(content["parameters"]["AutomationAssumeRole"]["default"]) == "AutomationRole", name
        assert "iam:PassRole" in content["description"] and "AutomationRoleArn" in content["description"], name
    assert "AutomationRoleArn" in TEMPLATE["Outputs"]


def test_automation_role_may_only_invoke_the_fix_workers():
    role = RESOURCES["AutomationRole"]["Properties"]
    trust = role["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "ssm.amazonaws.com"}]
    assert trust[0]["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert [_as_list(s["Action"]) for s in statements] == [["lambda:InvokeFunction"]]
    allowed = roster_targets(statements[0]["Resource"])
    workers = {ref_target(steps_by_name(d)["Invoke"]["inputs"]["FunctionName"]) for d in documents().values()}
    assert allowed == workers


# ----------------------------------------------------------------- the loop, run for real
class _Failed(Exception):
    pass


def _resolve(text: str, params: dict, outputs: dict) -> str:
    def one(match: re.Match) -> str:
        key = match.group(1).strip()
        if key == "automation:EXECUTION_ID":
            return "11111111-2222-3333-4444-555555555555"
        if key.startswith("variable:"):
            return outputs["variable:"][key.removeprefix("variable:")]
        if "." in key:
            step, name = key.split(".", 1)
            return str(outputs[step][name])
        return params[key]

    return re.sub(r"\{\{([^}]*)\}\}", one, text)


def _select(selector: str, result: dict):
    """A JSONPath selector over a step's response; a string is not looked into."""
    value = result
    for part in selector.removeprefix("$.").split("."):
        assert isinstance(value, dict) and part in value, f"{selector} selects nothing in {result!r}"
        value = value[part]
    return value


def run_document(document: dict, answers: list[dict], params: dict | None = None):
    """Walk the document's steps like SSM does, with `answers` as the worker's results (an
    object the function returned, or a raw payload string).

    Returns (outcome, worker_requests, step_trace); outcome is "Success" or the failure reason.
    """
    content = document["Properties"]["Content"]
    params = {k: v.get("default") for k, v in content["parameters"].items()} | (params or {})
    steps = content["mainSteps"]
    index = {s["name"]: i for i, s in enumerate(steps)}
    # Runbook variables start at their defaults; aws:updateVariable replaces a String (1-512
    # characters) and fails the step otherwise.
    outputs: dict = {"variable:": {k: v["default"] for k, v in content.get("variables", {}).items()}}
    requests: list = []
    trace: list = []
    answers = list(answers)
    position = 0
    for _ in range(100):
        step = steps[position]
        trace.append(step["name"])
        action = step["action"]
        next_name = step.get("nextStep")
        if action == "aws:invokeLambdaFunction":
            request = {k: _resolve(v, params, outputs) for k, v in step["inputs"]["InputPayload"].items()}
            requests.append(request)
            answer = answers.pop(0)
            # As AWS documents it: Payload is the JSON text of what the function returned.
            result = {"StatusCode": 200, "Payload": answer if isinstance(answer, str) else json.dumps(answer)}
            outputs[step["name"]] = dict(result) | {
                o["Name"]: _select(o["Selector"], result) for o in step.get("outputs", [])
            }
        elif action == "aws:branch":
            next_name = step["inputs"]["Default"]
            for choice in step["inputs"]["Choices"]:
                if _resolve(choice["Variable"], params, outputs) == choice["StringEquals"]:
                    next_name = choice["NextStep"]
                    break
        elif action == "aws:sleep":
            pass
        elif action == "aws:updateVariable":
            variable = step["inputs"]["Name"].removeprefix("variable:")
            value = _resolve(step["inputs"]["Value"], params, outputs)
            assert variable in outputs["variable:"] and 1 <= len(value) <= 512, (variable, value)
            outputs["variable:"][variable] = value
        elif action == "aws:executeScript":
            scope: dict = {}
            exec(step["inputs"]["Script"], scope)  # noqa: S102 - our own template's script
            events = {k: _resolve(v, params, outputs) for k, v in step["inputs"]["InputPayload"].items()}
            try:
                returned = scope[step["inputs"]["Handler"]](events, None)
            except Exception as exc:  # the step fails, so does the execution
                return str(exc), requests, trace
            result = {"Payload": returned}
            outputs[step["name"]] = {o["Name"]: _select(o["Selector"], result) for o in step.get("outputs", [])}
        else:
            raise AssertionError(f"unexpected action {action}")
        if step.get("isEnd"):
            return "Success", requests, trace
        position = index[next_name] if next_name else position + 1
    raise AssertionError(f"no end after 100 steps: {trace}")


def _answer(status: str, message: str = "", **extra) -> dict:
    return {
        "Status": status,
        "Message": message,
        "ResourceId": "my-bucket",
        "Fix": "fix-s3-enable-default-encryption",
        "DryRun": False,
        "Changes": [],
    } | extra


def test_a_resumable_document_hands_each_turn_the_point_the_last_one_reached():
    resumable = {name: d for name, d in documents().items() if "variables" in d["Properties"]["Content"]}
    assert set(resumable) == {"S3EncryptExistingObjectsDocument"}
    for name, document in resumable.items():
        outcome, requests, trace = run_document(
            document,
            [
                _answer("InProgress", "first keys", Resume="after:data/0100"),
                # Not a point a variable can hold (over 512 characters): from the start again.
                _answer("InProgress", "odd", Resume="after:" + "k" * 600),
                _answer("InProgress", "more", Resume="after:data/0200"),
                _answer("Succeeded", "done"),
            ],
        )
        assert outcome == "Success", (name, outcome)
        assert [r["Resume"] for r in requests] == ["start", "after:data/0100", "start", "after:data/0200"], name
        assert trace[:6] == ["Invoke", "Answer", "Decide", "Wait", "Remember", "Invoke"], trace


def test_loop_repeats_while_in_progress_and_succeeds():
    for name, document in documents().items():
        outcome, requests, trace = run_document(
            document,
            [_answer("InProgress", "started"), _answer("InProgress", "waiting"), _answer("Succeeded", "done")],
            {"ResourceId": "my-bucket"},
        )
        assert outcome == "Success", name
        turn = ["Invoke", "Answer", "Decide", "Wait"] + (["Remember"] if "variables" in document["Properties"]["Content"] else [])
        assert trace == turn * 2 + ["Invoke", "Answer", "Decide", "Succeeded"], name
        # Every turn asks for the same thing (a worker that hands on no continuation point).
        assert len(requests) == 3 and all(r == requests[0] for r in requests), name
        assert requests[0]["ResourceId"] == "my-bucket", name
        assert all(isinstance(v, str) for v in requests[0].values()), name


def test_worker_failure_ends_the_run_failed_with_its_message():
    for name, document in documents().items():
        outcome, _, trace = run_document(
            document, [_answer("Failed", "Key alias/x does not exist.")], {"ResourceId": "my-bucket"}
        )
        assert trace == ["Invoke", "Answer", "Decide", "Fail"], name
        assert "my-bucket" in outcome and "Failed" in outcome and "Key alias/x does not exist." in outcome


def test_a_worker_crash_or_timeout_ends_the_run_naming_the_error():
    # Lambda's error object is the Payload when the function fails; the Invoke step succeeds.
    timeout = {"errorMessage": "2026-01-01T00:00:00.000Z 1 Task timed out after 240.00 seconds"}
    for name, document in documents().items():
        outcome, _, trace = run_document(document, [timeout], {"ResourceId": "my-bucket"})
        assert trace == ["Invoke", "Answer", "Decide", "Fail"], name
        assert "worker status: WorkerError" in outcome and "Task timed out after 240.00 seconds" in outcome, outcome


def test_unexpected_answers_fail_instead_of_looping():
    for name, document in documents().items():
        for answer in ({"Status": "Done"}, {"errorType": "Panic", "errorMessage": "boom"}, {}, [], "not json", ""):
            outcome, _, trace = run_document(document, [answer], {"ResourceId": "my-bucket"})
            assert trace[-1] == "Fail" and outcome != "Success", (name, answer)


def test_document_parameter_defaults_reach_the_worker_as_strings():
    for name, document in documents().items():
        _, requests, _ = run_document(document, [_answer("Succeeded")], {"ResourceId": "b"})
        params = document["Properties"]["Content"]["parameters"]
        for key, value in requests[0].items():
            if key in params and "default" in params[key]:
                assert value == params[key]["default"], f"{name}.{key}"


# ---------------------------------------------------------------------- IAM and alerts
def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _iam_statements():
    for name, r in RESOURCES.items():
        props = r.get("Properties", {})
        if r["Type"] == "AWS::IAM::Role":
            for p in props.get("Policies", []):
                for s in p["PolicyDocument"]["Statement"]:
                    yield name, s
        elif r["Type"] in ("AWS::IAM::Policy", "AWS::SNS::TopicPolicy"):
            for s in props["PolicyDocument"]["Statement"]:
                yield name, s


def test_no_wildcard_actions_in_iam_policies():
    for name, statement in _iam_statements():
        assert statement["Effect"] == "Allow", name
        for action in _as_list(statement["Action"]):
            assert "*" not in action or action == "kms:GenerateDataKey*", f"{name}: {action}"


def test_star_resources_only_where_the_action_has_no_resource_level_permissions():
    star_ok = {"config:PutEvaluations", "config:GetResourceConfigHistory", "s3:ListAllMyBuckets"}
    # EC2 describes and the account-level EBS encryption settings have no resource-level permissions.
    star_ok |= {
        "ec2:DescribeVolumes",
        "ec2:DescribeSnapshots",
        "ec2:DescribeInstances",
        "ec2:DescribeInstanceTypes",
        "ec2:GetEbsEncryptionByDefault",
        "ec2:EnableEbsEncryptionByDefault",
        "ec2:GetEbsDefaultKmsKeyId",
        "ec2:ModifyEbsDefaultKmsKeyId",
        # Auto Scaling's Describe* actions have no resource-level permissions either.
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:DescribeAutoScalingGroups",
        # Listing Kinesis data streams and Firehose delivery streams: no resource-level permissions.
        "kinesis:ListStreams",
        "firehose:ListDeliveryStreams",
        # Listing DynamoDB tables and KMS keys: no resource-level permissions.
        "dynamodb:ListTables",
        "kms:ListKeys",
        # Listing SNS topics and SQS queues: no resource-level permissions.
        "sns:ListTopics",
        "sqs:ListQueues",
    }
    for name, statement in _iam_statements():
        if statement.get("Resource") == "*":
            assert set(_as_list(statement["Action"])) <= star_ok, f"{name}: {statement['Action']}"


def test_alert_topic_is_encrypted_with_a_rotating_key_that_its_publishers_can_use():
    topic = RESOURCES["AlertTopic"]["Properties"]
    assert ref_target(topic["KmsMasterKeyId"]) == "AlertKey"
    key = RESOURCES["AlertKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    statements = {s["Sid"]: s for s in key["KeyPolicy"]["Statement"]}
    assert statements["EventBridgePublishesAlerts"]["Principal"] == {"Service": "events.amazonaws.com"}
    fix_roles = roster_targets(statements["FixWorkersPublishAlerts"]["Principal"]["AWS"])
    workers = {ref_target(steps_by_name(d)["Invoke"]["inputs"]["FunctionName"]) for d in documents().values()}
    assert fix_roles == {ref_target(RESOURCES[w]["Properties"]["Role"]) for w in workers}
    for worker in workers:
        env = RESOURCES[worker]["Properties"]["Environment"]["Variables"]
        assert env["ATREST_ALERT_TOPIC_ARN"] == {"Ref": "AlertTopic"}, worker


def test_alert_rule_covers_every_rule_of_the_stack_and_reads_as_text():
    rule = RESOURCES["NonCompliantAlertRule"]["Properties"]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.config"]
    assert pattern["detail-type"] == ["Config Rules Compliance Change"]
    assert pattern["detail"]["configRuleName"] == [{"prefix": {"Ref": "RuleNamePrefix"}}]
    assert pattern["detail"]["newEvaluationResult"]["complianceType"] == ["NON_COMPLIANT"]
    transformer = rule["Targets"][0]["InputTransformer"]
    template = transformer["InputTemplate"]
    for line in template.strip().splitlines():
        assert line.startswith('"') and line.endswith('"'), f"unquoted line: {line}"
    used = set(re.findall(r"<([A-Za-z0-9]+)>", template))
    assert used <= set(transformer["InputPathsMap"]), used - set(transformer["InputPathsMap"])
    assert {"rule", "resourceType", "resourceId", "region", "account", "compliance"} <= used


def test_every_parameter_is_documented():
    for name, parameter in TEMPLATE["Parameters"].items():
        assert parameter.get("Description", "").strip(), name


def test_samconfig_deploys_with_the_expected_defaults():
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]
    assert config["global"]["parameters"]["stack_name"] == "atrest"
    deploy = config["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["confirm_changeset"] is True and deploy["resolve_s3"] is True
    assert deploy["region"] == "us-east-1"
    assert deploy["parameter_overrides"].startswith("AlertEmail=")
    assert config["build"]["parameters"] == {"cached": False, "parallel": False, "beta_features": True}


def test_sam_build_never_stops_at_the_beta_feature_prompt():
    # BuildMethod rust-cargolambda is a SAM CLI beta feature; unless beta features are enabled
    # (samconfig beta_features, or --beta-features) `sam build` asks, and a non-interactive build
    # (CI, make deploy) stops there.
    uses_beta = any(fn["Metadata"].get("BuildMethod") == "rust-cargolambda" for fn in resources_of("AWS::Serverless::Function").values())
    assert uses_beta
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]
    for command in ("build", "sync"):
        makefile = [line for line in (ROOT / "Makefile").read_text().splitlines() if re.search(rf"\bsam {command}\b", line)]
        enabled = config.get(command, {}).get("parameters", {}).get("beta_features") is True
        assert enabled or (makefile and all("--beta-features" in line for line in makefile)), command


def test_fix_workers_time_out_before_the_ssm_step_cap():
    # A worker still running when aws:invokeLambdaFunction's 300 s cap (the step's timeoutSeconds)
    # ends the step would fail the step instead of answering; ending the function first (240 s)
    # leaves a minute for Lambda to report the timeout as a function error the document reads.
    for name, document in documents().items():
        invoke = steps_by_name(document)["Invoke"]
        worker = RESOURCES[ref_target(invoke["inputs"]["FunctionName"])]
        assert function_property(worker, "Timeout") <= invoke["timeoutSeconds"] - 60, name


def test_the_s3_document_accepts_legacy_bucket_names():
    # us-east-1 buckets created before March 2018 may have names of up to 255 characters with
    # upper case letters and underscores; Config reports them as they are.
    pattern = RESOURCES["S3EnableDefaultEncryptionDocument"]["Properties"]["Content"]["parameters"]["ResourceId"]["allowedPattern"]
    for name in ["my-bucket", "a.b.c", "Legacy_Bucket", "UPPER", "x" * 255]:
        assert re.fullmatch(pattern, name), name
    for name in ["", "ab", "x" * 256, "a b", "a/b", "a;b", "'a'"]:
        assert re.fullmatch(pattern, name) is None, name


if __name__ == "__main__":
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    failed = 0
    for test_name, test in tests:
        try:
            test()
            print(f"ok   {test_name}")
        except Exception as error:  # report every failure, not only the first
            failed += 1
            print(f"FAIL {test_name}: {type(error).__name__}: {error}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
