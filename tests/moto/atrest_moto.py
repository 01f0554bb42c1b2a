#!/usr/bin/env python3
"""moto server with the AWS Config / SSM Automation operations atrest needs.

Launch it exactly like ``moto_server`` (same flags, plus ``--parent-pid``)::

    python tests/moto/atrest_moto.py -H 127.0.0.1 -p 5000 [--parent-pid PID]

moto 5.2.5 answers the operations below with an HTML 500 (NotImplementedError),
which the AWS SDKs retry and then report as a parse error. This file adds them by
monkeypatching moto's response classes: moto dispatches an action to the method
named after it in snake_case (``PutEvaluations`` -> ``put_evaluations``), so a
function assigned to that name on the class *is* the implementation.

config: PutEvaluations (without TestMode too), GetComplianceDetailsByConfigRule,
  DescribeComplianceByConfigRule, GetComplianceDetailsByResource,
  DescribeComplianceByResource, Put/Describe/DeleteRemediationConfiguration(s),
  StartRemediationExecution, DescribeRemediationExecutionStatus.
ssm: StartAutomationExecution, GetAutomationExecution,
  DescribeAutomationExecutions, StopAutomationExecution.
Beside this file: atrest_moto_rds.py (RDS corrections), atrest_moto_ec2.py
(EBS encryption-by-default settings: GetEbsDefaultKmsKeyId, ResetEbsDefaultKmsKeyId,
a corrected ModifyEbsDefaultKmsKeyId) and atrest_moto_s3.py (SSE-S3 as every bucket's
base default encryption, as AWS applies it since January 2023).

Conventions (see README.md):
* The ResultToken of PutEvaluations IS the ConfigRuleName (the real token is an
  opaque value from the Lambda event; our tests put the rule name there). The
  rule does not have to exist in moto (creating one needs a moto Lambda).
* Automation executions are only *recorded* (status ``Pending``): nothing runs
  SSM documents or Lambdas here. A test driver that performed the remediation
  itself reports the outcome with
  ``POST /atrest-ext/automation-executions/<id>/status``
  ``{"Status": "Success", "Outputs": {"k": ["v"]}, "FailureMessage": "..."}``.
* ``GET /atrest-ext/sns-messages?TopicArn=ARN`` returns what was published to
  that topic: ``[{"MessageId", "Subject", "Message", "MessageAttributes",
  "MessageGroupId"}]`` (in publish order).

All state lives in attributes of moto's per-account/per-region backend objects,
so ``POST /moto-api/reset`` (which rebuilds the backends) clears it. Account
and region come from the request exactly as moto derives them
(``self.current_account`` / ``self.region``).
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

# Must be set before moto's EC2 backend is created: loading 1301 fake AMIs
# makes the first EC2 call and DescribeImages slow, and we don't need them.
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")

import moto.server  # noqa: E402
from moto.config.exceptions import (  # noqa: E402
    InvalidResultTokenException,
    NoSuchConfigRuleException,
)
from moto.config.models import config_backends  # noqa: E402
from moto.config.responses import ConfigResponse  # noqa: E402
from moto.core.exceptions import JsonRESTError  # noqa: E402
from moto.sns.models import sns_backends  # noqa: E402
from moto.ssm.models import ssm_backends  # noqa: E402
from moto.ssm.responses import SimpleSystemManagerResponse  # noqa: E402
from werkzeug.wrappers import Request, Response  # noqa: E402

# moto serves requests on threads; our read-modify-write state needs a lock.
_LOCK = threading.RLock()


# --------------------------------------------------------------------------- helpers
def _error(code, message):
    """A JSON (awsJson1_1) error: HTTP 400, body {"__type": code, "message": ...}."""
    return JsonRESTError(code, message)


def _validation(errors):
    """AWS's request-validation error: 'N validation error(s) detected: a; b'."""
    n = len(errors)
    return _error(
        "ValidationException",
        f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(errors),
    )


def _state(backend, name):
    """A dict stored on a moto backend object (so /moto-api/reset drops it)."""
    if not hasattr(backend, name):
        setattr(backend, name, {})
    return getattr(backend, name)


def _params(response):
    return json.loads(response.body or "{}")


def _now():
    return time.time()


def _epoch(value):
    """Timestamps arrive as epoch seconds (awsJson default) or, by hand, ISO 8601."""
    if isinstance(value, (int, float)):
        return float(value)
    dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _limit(value, default, maximum):
    """Limit/MaxResults: 0 or absent means the default; above the max is invalid."""
    if value is None or value == 0:
        return default
    if value > maximum:
        raise _validation(
            [
                f"Value '{value}' at 'limit' failed to satisfy constraint: "
                f"Member must have value less than or equal to {maximum}"
            ]
        )
    return value


def _page(items, limit, token, error_code="InvalidNextTokenException"):
    """Offset pagination; the NextToken is the decimal offset (opaque to clients)."""
    try:
        start = int(token) if token else 0
        if start < 0 or start > len(items):
            raise ValueError
    except ValueError:
        raise _error(error_code, "The nextToken provided is invalid")
    end = start + limit
    return items[start:end], (str(end) if end < len(items) else None)


# --------------------------------------------------------------------------- config: evaluations
COMPLIANCE_TYPES = ["COMPLIANT", "NON_COMPLIANT", "NOT_APPLICABLE", "INSUFFICIENT_DATA"]
CAP = 25  # AWS caps ComplianceContributorCount.CappedCount (CapExceeded=true above it)


def _evaluations(response):
    """{rule name: {(resource type, resource id): result}} for this account+region."""
    backend = config_backends[response.current_account][response.region]
    return _state(backend, "_atrest_evaluations")


def put_evaluations(self):
    p = _params(self)
    evaluations = p.get("Evaluations")
    token = p.get("ResultToken")
    if evaluations is None:  # same as moto's own (TestMode) implementation
        raise _error(
            "InvalidParameterValueException",
            "The Evaluations object in your request cannot be null."
            "Add the required parameters and try again.",
        )

    # Request-shape validation, reported like AWS's front end does.
    errors = []
    if len(evaluations) > 100:
        errors.append(
            f"Value '[{len(evaluations)} evaluations]' at 'evaluations' failed to satisfy "
            "constraint: Member must have length less than or equal to 100"
        )
    for i, ev in enumerate(evaluations, start=1):
        where = f"evaluations.{i}.member"
        for field, key, maximum in (
            ("ComplianceResourceType", "complianceResourceType", 256),
            ("ComplianceResourceId", "complianceResourceId", 768),
            ("Annotation", "annotation", 256),
        ):
            value = ev.get(field)
            if value is None:
                if field != "Annotation":
                    errors.append(f"Value null at '{where}.{key}' failed to satisfy "
                                  "constraint: Member must not be null")
            elif len(value) > maximum:
                errors.append(f"Value '{value}' at '{where}.{key}' failed to satisfy "
                              f"constraint: Member must have length less than or equal to {maximum}")
            elif len(value) < 1:
                errors.append(f"Value '{value}' at '{where}.{key}' failed to satisfy "
                              "constraint: Member must have length greater than or equal to 1")
        ctype = ev.get("ComplianceType")
        if ctype is None:
            errors.append(f"Value null at '{where}.complianceType' failed to satisfy "
                          "constraint: Member must not be null")
        elif ctype not in COMPLIANCE_TYPES:
            errors.append(f"Value '{ctype}' at '{where}.complianceType' failed to satisfy "
                          f"constraint: Member must satisfy enum value set: [{', '.join(COMPLIANCE_TYPES)}]")
        if ev.get("OrderingTimestamp") is None:
            errors.append(f"Value null at '{where}.orderingTimestamp' failed to satisfy "
                          "constraint: Member must not be null")
    if errors:
        raise _validation(errors)

    if not token:  # AWS: even with TestMode the token "cannot be null"
        raise InvalidResultTokenException()
    for ev in evaluations:
        if ev["ComplianceType"] == "INSUFFICIENT_DATA":
            # The Evaluation data type accepts only COMPLIANT, NON_COMPLIANT and
            # NOT_APPLICABLE (AWS API reference, Evaluation.ComplianceType).
            raise _error(
                "InvalidParameterValueException",
                "The ComplianceType INSUFFICIENT_DATA is not valid for an evaluation. "
                "Use COMPLIANT, NON_COMPLIANT or NOT_APPLICABLE.",
            )

    if p.get("TestMode"):
        return json.dumps({"FailedEvaluations": []})

    rule = token  # convention: ResultToken == ConfigRuleName
    now = _now()
    with _LOCK:
        results = _evaluations(self).setdefault(rule, {})
        for ev in evaluations:
            key = (ev["ComplianceResourceType"], ev["ComplianceResourceId"])
            ordering = _epoch(ev["OrderingTimestamp"])
            old = results.get(key)
            # AWS keeps the evaluation with the latest OrderingTimestamp; an older
            # one arriving late does not overwrite a newer one.
            if old is not None and ordering < old["OrderingTimestamp"]:
                continue
            results[key] = {
                "ConfigRuleName": rule,
                "ResourceType": key[0],
                "ResourceId": key[1],
                "ComplianceType": ev["ComplianceType"],
                "Annotation": ev.get("Annotation"),
                "OrderingTimestamp": ordering,
                "ResultRecordedTime": now,
                # No real invocation happens; the put is the best approximation.
                "ConfigRuleInvokedTime": now,
            }
    return json.dumps({"FailedEvaluations": []})


def _result_shape(r):
    """EvaluationResult as GetComplianceDetailsBy* return it."""
    out = {
        "EvaluationResultIdentifier": {
            "EvaluationResultQualifier": {
                "ConfigRuleName": r["ConfigRuleName"],
                "ResourceType": r["ResourceType"],
                "ResourceId": r["ResourceId"],
                "EvaluationMode": "DETECTIVE",
            },
            "OrderingTimestamp": r["OrderingTimestamp"],
        },
        "ComplianceType": r["ComplianceType"],
        "ResultRecordedTime": r["ResultRecordedTime"],
        "ConfigRuleInvokedTime": r["ConfigRuleInvokedTime"],
    }
    if r.get("Annotation") is not None:
        out["Annotation"] = r["Annotation"]
    return out


def _detail_filter(types):
    """ComplianceTypes for GetComplianceDetailsBy*: INSUFFICIENT_DATA can't be used
    as a filter; without a filter AWS returns COMPLIANT and NON_COMPLIANT only
    (NOT_APPLICABLE results must be asked for explicitly)."""
    if "INSUFFICIENT_DATA" in (types or []):
        raise _error("InvalidParameterValueException",
                     "INSUFFICIENT_DATA cannot be used as a ComplianceType for filtering results.")
    return set(types or ["COMPLIANT", "NON_COMPLIANT"])


def _known_rules(self):
    """Rules that exist for this account+region: moto's rules plus any rule that
    has received evaluations (our rules need not be created in moto)."""
    backend = config_backends[self.current_account][self.region]
    names = set(backend.config_rules) | set(_evaluations(self))
    return sorted(names)


def get_compliance_details_by_config_rule(self):
    p = _params(self)
    rule = p.get("ConfigRuleName")
    if rule not in _known_rules(self):
        raise NoSuchConfigRuleException(rule)
    wanted = _detail_filter(p.get("ComplianceTypes"))
    limit = _limit(p.get("Limit"), 10, 100)
    with _LOCK:
        rows = sorted(_evaluations(self).get(rule, {}).values(),
                      key=lambda r: (r["ResourceType"], r["ResourceId"]))
    rows = [r for r in rows if r["ComplianceType"] in wanted]
    page, token = _page(rows, limit, p.get("NextToken"))
    out = {"EvaluationResults": [_result_shape(r) for r in page]}
    if token:
        out["NextToken"] = token
    return json.dumps(out)


def get_compliance_details_by_resource(self):
    p = _params(self)
    rtype, rid = p.get("ResourceType"), p.get("ResourceId")
    if not rtype or not rid:
        raise _error("InvalidParameterValueException",
                     "ResourceType and ResourceId are required (ResourceEvaluationId "
                     "is not supported by atrest_moto).")
    wanted = _detail_filter(p.get("ComplianceTypes"))
    with _LOCK:
        rows = [results[(rtype, rid)]
                for _, results in sorted(_evaluations(self).items())
                if (rtype, rid) in results]
    rows = [r for r in rows if r["ComplianceType"] in wanted]
    page, token = _page(rows, 100, p.get("NextToken"))
    out = {"EvaluationResults": [_result_shape(r) for r in page]}
    if token:
        out["NextToken"] = token
    return json.dumps(out)


def _summary_filter(types):
    """ComplianceTypes for DescribeComplianceBy*: the Compliance data type has no
    NOT_APPLICABLE value."""
    if "NOT_APPLICABLE" in (types or []):
        raise _error("InvalidParameterValueException",
                     "NOT_APPLICABLE is not a valid ComplianceType for this operation.")
    return set(types or ["COMPLIANT", "NON_COMPLIANT", "INSUFFICIENT_DATA"])


def _compliance(results):
    """Aggregate per-rule (or per-resource) results the way AWS does: any
    NON_COMPLIANT -> NON_COMPLIANT with a capped count; else any COMPLIANT ->
    COMPLIANT; else (nothing, or only NOT_APPLICABLE) -> INSUFFICIENT_DATA."""
    types = [r["ComplianceType"] for r in results]
    bad = types.count("NON_COMPLIANT")
    if bad:
        return {"ComplianceType": "NON_COMPLIANT",
                "ComplianceContributorCount": {"CappedCount": min(bad, CAP),
                                               "CapExceeded": bad > CAP}}
    if "COMPLIANT" in types:
        return {"ComplianceType": "COMPLIANT"}
    return {"ComplianceType": "INSUFFICIENT_DATA"}


def describe_compliance_by_config_rule(self):
    p = _params(self)
    known = _known_rules(self)
    names = p.get("ConfigRuleNames") or known
    for name in names:
        if name not in known:
            raise NoSuchConfigRuleException(name)
    wanted = _summary_filter(p.get("ComplianceTypes"))
    with _LOCK:
        evals = _evaluations(self)
        rows = [{"ConfigRuleName": n, "Compliance": _compliance(evals.get(n, {}).values())}
                for n in names]
    rows = [r for r in rows if r["Compliance"]["ComplianceType"] in wanted]
    return json.dumps({"ComplianceByConfigRules": rows})


def describe_compliance_by_resource(self):
    p = _params(self)
    rtype, rid = p.get("ResourceType"), p.get("ResourceId")
    if rid and not rtype:
        raise _error("InvalidParameterValueException",
                     "If you specify a resource ID, you must also specify a resource type.")
    wanted = _summary_filter(p.get("ComplianceTypes"))
    limit = _limit(p.get("Limit"), 10, 100)
    by_resource = {}
    with _LOCK:
        for results in _evaluations(self).values():
            for key, r in results.items():
                by_resource.setdefault(key, []).append(r)
    if rtype and rid and (rtype, rid) not in by_resource:
        by_resource[(rtype, rid)] = []  # an explicitly named resource is always reported
    rows = []
    for (t, i), results in sorted(by_resource.items()):
        if (rtype and t != rtype) or (rid and i != rid):
            continue
        compliance = _compliance(results)
        # Resources that only ever got NOT_APPLICABLE are out of scope: not listed
        # unless asked for by id.
        if results and compliance["ComplianceType"] == "INSUFFICIENT_DATA" and not rid:
            continue
        if compliance["ComplianceType"] in wanted:
            rows.append({"ResourceType": t, "ResourceId": i, "Compliance": compliance})
    page, token = _page(rows, limit, p.get("NextToken"))
    out = {"ComplianceByResources": page}
    if token:
        out["NextToken"] = token
    return json.dumps(out)


# --------------------------------------------------------------------------- config: remediation
def _remediations(self):
    return _state(config_backends[self.current_account][self.region], "_atrest_remediations")


def _remediation_runs(self):
    """{(rule, resource type, resource id): {AutomationExecutionId, InvocationTime}}"""
    return _state(config_backends[self.current_account][self.region], "_atrest_remediation_runs")


def _no_remediation(rule):
    return _error("NoSuchRemediationConfigurationException",
                  f"No RemediationConfiguration for rule {rule} exists.")


def put_remediation_configurations(self):
    configs = _params(self).get("RemediationConfigurations") or []
    errors = []
    if len(configs) > 25:
        errors.append("Value at 'remediationConfigurations' failed to satisfy constraint: "
                      "Member must have length less than or equal to 25")
    for i, c in enumerate(configs, start=1):
        if c.get("TargetType") != "SSM_DOCUMENT":
            errors.append(f"Value '{c.get('TargetType')}' at 'remediationConfigurations.{i}.member."
                          "targetType' failed to satisfy constraint: Member must satisfy enum value set: [SSM_DOCUMENT]")
        for name, v in (c.get("Parameters") or {}).items():
            rv = v.get("ResourceValue")
            if rv is not None and rv.get("Value") != "RESOURCE_ID":
                errors.append(f"Value '{rv.get('Value')}' at 'remediationConfigurations.{i}.member."
                              f"parameters.{name}.member.resourceValue.value' failed to satisfy "
                              "constraint: Member must satisfy enum value set: [RESOURCE_ID]")
    if errors:
        raise _validation(errors)
    with _LOCK:
        store = _remediations(self)
        for c in configs:
            stored = dict(c)
            old = store.get(c["ConfigRuleName"])
            stored["Arn"] = old["Arn"] if old else (
                f"arn:{self.partition}:config:{self.region}:{self.current_account}:"
                f"remediation-configuration/{c['ConfigRuleName']}/{uuid.uuid4()}")
            store[c["ConfigRuleName"]] = stored
    return json.dumps({"FailedBatches": []})


def describe_remediation_configurations(self):
    names = _params(self).get("ConfigRuleNames") or []
    with _LOCK:
        store = _remediations(self)
        found = [store[n] for n in names if n in store]
    return json.dumps({"RemediationConfigurations": found})


def delete_remediation_configuration(self):
    rule = _params(self).get("ConfigRuleName")
    with _LOCK:
        if _remediations(self).pop(rule, None) is None:
            raise _no_remediation(rule)
    return json.dumps({})


def start_remediation_execution(self):
    p = _params(self)
    rule, keys = p.get("ConfigRuleName"), p.get("ResourceKeys") or []
    if not 1 <= len(keys) <= 100:
        raise _validation([f"Value at 'resourceKeys' failed to satisfy constraint: Member must "
                           f"have length {'less' if keys else 'greater'} than or equal to "
                           f"{100 if keys else 1}"])
    with _LOCK:
        config = _remediations(self).get(rule)
    if config is None:
        raise _no_remediation(rule)
    ssm = ssm_backends[self.current_account][self.region]
    failed, messages = [], []
    for key in keys:
        # RemediationParameterValue -> automation parameter list: ResourceValue
        # RESOURCE_ID becomes the resource id, StaticValue its values.
        params = {}
        for name, v in (config.get("Parameters") or {}).items():
            if "ResourceValue" in v:
                params[name] = [key["resourceId"]]
            elif "StaticValue" in v:
                params[name] = list(v["StaticValue"].get("Values", []))
        try:
            exec_id = _start_automation(ssm, self.current_account, config["TargetId"],
                                        config.get("TargetVersion"), params)
        except JsonRESTError as e:
            failed.append(key)
            messages.append(e.message)
            continue
        with _LOCK:
            _remediation_runs(self)[(rule, key["resourceType"], key["resourceId"])] = {
                "ResourceKey": key, "AutomationExecutionId": exec_id, "InvocationTime": _now()}
    out = {"FailedItems": failed}
    if messages:
        out["FailureMessage"] = "; ".join(messages)
    return json.dumps(out)


# Automation status -> RemediationExecutionState / RemediationExecutionStepState.
_REMEDIATION_STATE = {"Pending": "QUEUED", "InProgress": "IN_PROGRESS", "Waiting": "IN_PROGRESS",
                      "Success": "SUCCEEDED", "CompletedWithSuccess": "SUCCEEDED",
                      "Failed": "FAILED", "TimedOut": "FAILED", "Cancelled": "FAILED",
                      "Cancelling": "IN_PROGRESS", "CompletedWithFailure": "FAILED"}
_STEP_STATE = {"Pending": "PENDING", "InProgress": "IN_PROGRESS", "Success": "SUCCEEDED",
               "Failed": "FAILED", "TimedOut": "FAILED", "Cancelled": "FAILED", "Exited": "EXITED"}


def describe_remediation_execution_status(self):
    p = _params(self)
    rule = p.get("ConfigRuleName")
    with _LOCK:
        if rule not in _remediations(self):
            raise _no_remediation(rule)
        runs = [(k, v) for k, v in sorted(_remediation_runs(self).items()) if k[0] == rule]
        automations = _automations(ssm_backends[self.current_account][self.region])
        wanted = {(k["resourceType"], k["resourceId"]) for k in p.get("ResourceKeys") or []}
        rows = []
        for (_, rtype, rid), run in runs:
            if wanted and (rtype, rid) not in wanted:
                continue
            # The state is read from the linked automation execution, so a status
            # recorded via /atrest-ext/... shows up here too.
            auto = automations.get(run["AutomationExecutionId"], {})
            status = auto.get("AutomationExecutionStatus", "Pending")
            steps = [{k: v for k, v in {
                "Name": s.get("StepName"),
                "State": _STEP_STATE.get(s.get("StepStatus"), "UNKNOWN"),
                "ErrorMessage": s.get("FailureMessage"),
                "StartTime": s.get("ExecutionStartTime"),
                "StopTime": s.get("ExecutionEndTime")}.items() if v is not None}
                for s in auto.get("StepExecutions", [])]
            rows.append({"ResourceKey": run["ResourceKey"],
                         "State": _REMEDIATION_STATE.get(status, "UNKNOWN"),
                         "StepDetails": steps,
                         "InvocationTime": run["InvocationTime"],
                         "LastUpdatedTime": auto.get("_updated", run["InvocationTime"])})
    page, token = _page(rows, _limit(p.get("Limit"), 100, 100), p.get("NextToken"))
    out = {"RemediationExecutionStatuses": page}
    if token:
        out["NextToken"] = token
    return json.dumps(out)


# --------------------------------------------------------------------------- ssm: automation
TERMINAL = {"Success", "TimedOut", "Cancelled", "Failed", "Rejected", "CompletedWithSuccess",
            "CompletedWithFailure", "ChangeCalendarOverrideRejected", "Exited"}
STATUSES = TERMINAL | {"Pending", "InProgress", "Waiting", "Cancelling", "PendingApproval",
                       "Approved", "Scheduled", "RunbookInProgress",
                       "PendingChangeCalendarOverride", "ChangeCalendarOverrideApproved"}


def _automations(ssm_backend):
    """{execution id: AutomationExecution dict (+ private '_updated')}"""
    return _state(ssm_backend, "_atrest_automations")


def _public(execution):
    return {k: v for k, v in execution.items() if not k.startswith("_")}


def _start_automation(ssm, account, name, version, params, extra=None):
    """Validate against the document stored in moto's SSM backend and record a
    Pending execution. Shared by StartAutomationExecution and remediation."""
    if name.startswith("arn:"):  # DocumentName may be an ARN: ...:document/NAME
        name = name.split("document/", 1)[-1]
    documents = ssm._documents.get(name)
    if documents is None or documents.get_default_version().document_type != "Automation":
        raise _error("AutomationDefinitionNotFoundException",
                     f"Automation definition {name} not found.")
    doc = documents.find(version if version not in (None, "$DEFAULT") else None, strict=False)
    if doc is None:
        raise _error("AutomationDefinitionVersionNotFoundException",
                     f"Automation definition {name} with version {version} not found.")
    declared = (doc.content_json or {}).get("parameters") or {}
    params = params or {}
    unknown = sorted(set(params) - set(declared))
    missing = sorted(n for n, d in declared.items() if "default" not in d and n not in params)
    if unknown or missing:
        raise _error("InvalidAutomationExecutionParametersException",
                     "; ".join([f'Parameter "{n}" is not defined in the document.' for n in unknown]
                               + [f'Parameter "{n}" is required but not provided.' for n in missing]))
    exec_id = str(uuid.uuid4())
    now = _now()
    execution = {
        "AutomationExecutionId": exec_id,
        "DocumentName": name,
        "DocumentVersion": doc.document_version,
        "ExecutionStartTime": now,
        "AutomationExecutionStatus": "Pending",
        "StepExecutions": [],
        "StepExecutionsTruncated": False,
        "Parameters": params,
        "Outputs": {},
        "Mode": "Auto",
        "ExecutedBy": f"arn:aws:iam::{account}:root",
        "_updated": now,
        **(extra or {}),
    }
    with _LOCK:
        _automations(ssm)[exec_id] = execution
    return exec_id


def _ssm(self):
    return ssm_backends[self.current_account][self.region]


def _find_automation(self, exec_id):
    execution = _automations(_ssm(self)).get(exec_id)
    if execution is None:
        raise _error("AutomationExecutionNotFoundException",
                     f"Automation execution {exec_id} not found.")
    return execution


def start_automation_execution(self):
    p = _params(self)
    extra = {k: p[k] for k in ("Mode", "TargetParameterName", "Targets", "MaxConcurrency",
                               "MaxErrors") if k in p}
    exec_id = _start_automation(_ssm(self), self.current_account, p.get("DocumentName", ""),
                                p.get("DocumentVersion"), p.get("Parameters"), extra)
    return json.dumps({"AutomationExecutionId": exec_id})


def get_automation_execution(self):
    with _LOCK:
        execution = _public(_find_automation(self, _params(self).get("AutomationExecutionId")))
    return json.dumps({"AutomationExecution": execution}, default=str)


_META_KEYS = ("AutomationExecutionId", "DocumentName", "DocumentVersion", "AutomationExecutionStatus",
              "ExecutionStartTime", "ExecutionEndTime", "ExecutedBy", "Outputs", "Mode",
              "FailureMessage", "TargetParameterName", "Targets", "MaxConcurrency", "MaxErrors")


def describe_automation_executions(self):
    p = _params(self)
    with _LOCK:
        rows = list(_automations(_ssm(self)).values())
    for f in p.get("Filters") or []:
        key, values = f.get("Key"), f.get("Values") or []
        if key == "ExecutionId":
            rows = [r for r in rows if r["AutomationExecutionId"] in values]
        elif key == "DocumentNamePrefix":
            rows = [r for r in rows if any(r["DocumentName"].startswith(v) for v in values)]
        elif key == "ExecutionStatus":
            rows = [r for r in rows if r["AutomationExecutionStatus"] in values]
        elif key in ("StartTimeBefore", "StartTimeAfter"):
            t = _epoch(values[0])
            rows = [r for r in rows if (r["ExecutionStartTime"] <= t) == (key == "StartTimeBefore")]
        else:  # fail loudly rather than silently ignoring a filter
            raise _error("InvalidFilterKey", f"atrest_moto does not implement filter key {key}")
    rows.sort(key=lambda r: r["ExecutionStartTime"], reverse=True)  # newest first, as AWS
    limit = p.get("MaxResults") or 50
    if not 1 <= limit <= 50:
        raise _validation([f"Value '{limit}' at 'maxResults' failed to satisfy constraint: "
                           "Member must have value less than or equal to 50"])
    page, token = _page(rows, limit, p.get("NextToken"), "InvalidNextToken")
    meta = [dict({k: r[k] for k in _META_KEYS if k in r}, AutomationType="Local", LogFile="")
            for r in page]
    out = {"AutomationExecutionMetadataList": meta}
    if token:
        out["NextToken"] = token
    return json.dumps(out, default=str)


def stop_automation_execution(self):
    with _LOCK:
        execution = _find_automation(self, _params(self).get("AutomationExecutionId"))
        if execution["AutomationExecutionStatus"] in TERMINAL:
            raise _error("InvalidAutomationStatusUpdateException",
                         f"The execution is already {execution['AutomationExecutionStatus']}.")
        execution.update(AutomationExecutionStatus="Cancelled", ExecutionEndTime=_now(),
                         _updated=_now())
    return json.dumps({})


def _patch():
    for cls, functions in (
        (ConfigResponse, (put_evaluations, get_compliance_details_by_config_rule,
                          get_compliance_details_by_resource, describe_compliance_by_config_rule,
                          describe_compliance_by_resource, put_remediation_configurations,
                          describe_remediation_configurations, delete_remediation_configuration,
                          start_remediation_execution, describe_remediation_execution_status)),
        (SimpleSystemManagerResponse, (start_automation_execution, get_automation_execution,
                                       describe_automation_executions,
                                       stop_automation_execution)),
    ):
        for fn in functions:
            setattr(cls, fn.__name__, fn)
    import atrest_moto_rds  # noqa: E402  (beside this file; RDS corrections, see its docstring)
    atrest_moto_rds.patch()
    import atrest_moto_ec2  # noqa: E402  (EBS encryption-by-default settings, see its docstring)
    atrest_moto_ec2.patch()
    import atrest_moto_s3  # noqa: E402  (SSE-S3 as every bucket's base encryption, see its docstring)
    atrest_moto_s3.patch()
    import atrest_moto_dynamodb  # noqa: E402  (UpdateTable SSESpecification, see its docstring)
    atrest_moto_dynamodb.patch()
    import atrest_moto_kms_rotation  # noqa: E402  (KMS rotation period and refusals, see its docstring)
    atrest_moto_kms_rotation.patch()
    import atrest_moto_firehose  # noqa: E402  (Firehose: SSE for Direct PUT only, S3 description defaults)
    atrest_moto_firehose.patch()


# --------------------------------------------------------------------------- /atrest-ext endpoints
def _json(data, status=200):
    return Response(json.dumps(data, default=str), status=status, mimetype="application/json")


def _ext_sns_messages(request):
    arn = request.args.get("TopicArn", "")
    parts = arn.split(":")  # arn:aws:sns:REGION:ACCOUNT:NAME
    if len(parts) != 6 or parts[2] != "sns":
        return _json({"message": f"not an SNS topic ARN: {arn!r}"}, 400)
    topic = sns_backends[parts[4]][parts[3]].topics.get(arn)
    if topic is None:
        return _json({"message": f"topic not found: {arn}"}, 404)
    # moto 5.2.5 keeps Topic.sent_notifications as a list of tuples
    # (message_id, message, subject, message_attributes, group_id).
    return _json([{"MessageId": mid, "Subject": subject, "Message": message,
                   "MessageAttributes": attrs or {}, "MessageGroupId": group}
                  for mid, message, subject, attrs, group in list(topic.sent_notifications)])


def _ext_automation_status(request, exec_id):
    try:
        body = json.loads(request.get_data(as_text=True) or "{}")
    except ValueError:
        return _json({"message": "body must be JSON"}, 400)
    status = body.get("Status")
    if status not in STATUSES:
        return _json({"message": f"Status must be one of {sorted(STATUSES)}"}, 400)
    with _LOCK:
        # The driver does not know which account/region the execution lives in.
        for account_backends in list(ssm_backends.values()):
            for backend in list(account_backends.values()):
                execution = _automations(backend).get(exec_id)
                if execution is None:
                    continue
                now = _now()
                execution.update(AutomationExecutionStatus=status, _updated=now)
                if status in TERMINAL:
                    execution.setdefault("ExecutionEndTime", now)
                if "Outputs" in body:
                    # AutomationParameterMap values are lists of strings.
                    execution["Outputs"] = {k: v if isinstance(v, list) else [str(v)]
                                            for k, v in (body["Outputs"] or {}).items()}
                for key in ("FailureMessage", "StepExecutions", "CurrentStepName"):
                    if key in body:
                        execution[key] = body[key]
                return _json(_public(execution))
    return _json({"message": f"automation execution not found: {exec_id}"}, 404)


def _ext_s3_legacy_object(request):
    import atrest_moto_s3  # noqa: E402  (beside this file)
    # Key= one object, or Prefix= every object under it ("" = the whole bucket).
    bucket, key, prefix = request.args.get("Bucket", ""), request.args.get("Key"), request.args.get("Prefix")
    with _LOCK:
        changed = atrest_moto_s3.make_legacy_object(bucket, key, prefix)
    if not changed and prefix is None:
        return _json({"message": f"object not found: s3://{bucket}/{key}"}, 404)
    return _json({"Bucket": bucket, "Objects": changed, "LastModified": str(atrest_moto_s3.LEGACY_LAST_MODIFIED)})


class AtrestApp:
    """WSGI wrapper: /atrest-ext/* is ours, everything else goes to moto."""

    def __init__(self, moto_app):
        self.moto_app = moto_app

    def __getattr__(self, name):  # e.g. moto.server.main sets/reads .debug
        return getattr(self.moto_app, name)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/atrest-ext/"):
            return self.moto_app(environ, start_response)
        request = Request(environ)
        parts = path.strip("/").split("/")
        if request.method == "GET" and parts == ["atrest-ext", "sns-messages"]:
            response = _ext_sns_messages(request)
        elif request.method == "POST" and parts == ["atrest-ext", "s3-legacy-object"]:
            response = _ext_s3_legacy_object(request)
        elif (request.method == "POST" and len(parts) == 4
              and parts[1] == "automation-executions" and parts[3] == "status"):
            response = _ext_automation_status(request, parts[2])
        else:
            response = _json({"message": f"no such atrest-ext endpoint: {request.method} {path}"}, 404)
        return response(environ, start_response)


# --------------------------------------------------------------------------- main
def _watch_parent(parent_pid):
    """Exit when the process that started us is gone, so a crashed test run
    never leaves a server behind. Checked every second: kill(pid, 0) fails once
    the parent is reaped, and our ppid changes as soon as we are re-parented."""
    started_as_child = os.getppid() == parent_pid
    while True:
        time.sleep(1)
        try:
            os.kill(parent_pid, 0)
            alive = not started_as_child or os.getppid() == parent_pid
        except ProcessLookupError:
            alive = False
        except PermissionError:  # exists, owned by someone else
            alive = True
        if not alive:
            os.kill(os.getpid(), signal.SIGTERM)  # moto's handler exits cleanly
            time.sleep(5)
            os._exit(0)  # in case the main thread did not get to exit


def main(argv=None):
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--parent-pid", type=int, default=None)
    args, moto_argv = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()
    _patch()
    # Reuse moto's own server main (same flags, signals, request handler); only
    # wrap the WSGI app it builds so that /atrest-ext/* reaches us.
    moto_dispatcher = moto.server.DomainDispatcherApplication
    moto.server.DomainDispatcherApplication = lambda create_app: AtrestApp(moto_dispatcher(create_app))
    sys.argv = [sys.argv[0], *moto_argv]  # moto's main falls back to sys.argv on []
    moto.server.main(moto_argv)


if __name__ == "__main__":
    main()
