#!/usr/bin/env python3
"""Self-test of atrest_moto.py with boto3 (which comes with moto).

    tests/moto/with-moto python tests/moto/test_atrest_moto.py
    # or, inside the venv:  .venv/bin/python tests/moto/test_atrest_moto.py

Starts its own extension server on a free port (it does not use the one
with-moto started), exercises every added operation and /atrest-ext endpoint,
and ends with a plain 'N passed, N failed' line.
"""

import json
import os
import socket
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "atrest_moto.py")
ENDPOINT = None  # set in setUpModule
_proc = None

AUTOMATION_DOC = json.dumps({
    "schemaVersion": "0.3",
    "description": "test remediation",
    "parameters": {
        "ResourceId": {"type": "String"},
        "KmsKeyId": {"type": "String", "default": "alias/aws/rds"},
        "AutomationAssumeRole": {"type": "String", "default": ""},
    },
    "mainSteps": [{"name": "noop", "action": "aws:sleep", "inputs": {"Duration": "PT1S"}}],
})
COMMAND_DOC = json.dumps({
    "schemaVersion": "2.2", "description": "cmd",
    "mainSteps": [{"action": "aws:runShellScript", "name": "x",
                   "inputs": {"runCommand": ["true"]}}],
})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(parent_pid=None):
    port = free_port()
    cmd = [sys.executable, SERVER, "-H", "127.0.0.1", "-p", str(port)]
    if parent_pid:
        cmd += ["--parent-pid", str(parent_pid)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=2).read()
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("atrest_moto.py exited during startup")
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("atrest_moto.py did not become ready in 60 s")


def setUpModule():
    global _proc, ENDPOINT
    _proc, ENDPOINT = start_server(parent_pid=os.getpid())


def tearDownModule():
    _proc.terminate()
    _proc.wait(10)


def client(service, region="us-east-1", validate=True, account=None):
    c = boto3.client(
        service, endpoint_url=ENDPOINT, region_name=region,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        # No retries: a gap in the extension must fail fast, not after backoff.
        config=Config(retries={"total_max_attempts": 1}, parameter_validation=validate),
    )
    if account:  # moto's per-request account override
        c.meta.events.register("before-sign.*.*", lambda request, **_: request.headers.__setitem__(
            "x-moto-account-id", account))
    return c


def http(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(ENDPOINT + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def ev(rid, ctype="NON_COMPLIANT", ts=None, rtype="AWS::RDS::DBInstance", annotation=None):
    e = {"ComplianceResourceType": rtype, "ComplianceResourceId": rid, "ComplianceType": ctype,
         "OrderingTimestamp": ts or datetime(2026, 1, 1, tzinfo=timezone.utc)}
    if annotation is not None:
        e["Annotation"] = annotation
    return e


class Base(unittest.TestCase):
    def setUp(self):
        status, body = http("POST", "/moto-api/reset")
        self.assertEqual((status, body), (200, {"status": "ok"}))
        self.config = client("config")
        self.ssm = client("ssm")

    def assertError(self, code, fn, *args, **kwargs):
        with self.assertRaises(ClientError) as cm:
            fn(*args, **kwargs)
        err = cm.exception.response
        self.assertEqual(err["Error"]["Code"], code, err)
        self.assertEqual(err["ResponseMetadata"]["HTTPStatusCode"], 400)
        return err["Error"]["Message"]

    def make_doc(self, name="Atrest-Remediate", content=AUTOMATION_DOC, doc_type="Automation"):
        self.ssm.create_document(Name=name, Content=content, DocumentType=doc_type,
                                 DocumentFormat="JSON")


class Evaluations(Base):
    def test_put_and_get_details(self):
        out = self.config.put_evaluations(ResultToken="rule-a", Evaluations=[
            ev("db-1", "NON_COMPLIANT", annotation="not encrypted"),
            ev("db-2", "COMPLIANT"),
            ev("db-3", "NOT_APPLICABLE"),
        ])
        self.assertEqual(out["FailedEvaluations"], [])
        res = self.config.get_compliance_details_by_config_rule(ConfigRuleName="rule-a")
        rows = res["EvaluationResults"]
        # NOT_APPLICABLE only when asked for explicitly.
        self.assertEqual([r["EvaluationResultIdentifier"]["EvaluationResultQualifier"]["ResourceId"]
                          for r in rows], ["db-1", "db-2"])
        r = rows[0]
        q = r["EvaluationResultIdentifier"]["EvaluationResultQualifier"]
        self.assertEqual((q["ConfigRuleName"], q["ResourceType"]), ("rule-a", "AWS::RDS::DBInstance"))
        self.assertEqual(r["EvaluationResultIdentifier"]["OrderingTimestamp"],
                         datetime(2026, 1, 1, tzinfo=timezone.utc))
        self.assertEqual((r["ComplianceType"], r["Annotation"]), ("NON_COMPLIANT", "not encrypted"))
        self.assertIsInstance(r["ResultRecordedTime"], datetime)
        self.assertIsInstance(r["ConfigRuleInvokedTime"], datetime)
        self.assertNotIn("Annotation", rows[1])

        na = self.config.get_compliance_details_by_config_rule(
            ConfigRuleName="rule-a", ComplianceTypes=["NOT_APPLICABLE"])["EvaluationResults"]
        self.assertEqual([x["ComplianceType"] for x in na], ["NOT_APPLICABLE"])
        self.assertError("InvalidParameterValueException",
                         self.config.get_compliance_details_by_config_rule,
                         ConfigRuleName="rule-a", ComplianceTypes=["INSUFFICIENT_DATA"])
        self.assertError("NoSuchConfigRuleException",
                         self.config.get_compliance_details_by_config_rule, ConfigRuleName="nope")

    def test_ordering_timestamp_semantics(self):
        t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
        put = self.config.put_evaluations
        put(ResultToken="r", Evaluations=[ev("db-1", "NON_COMPLIANT", t0)])
        put(ResultToken="r", Evaluations=[ev("db-1", "COMPLIANT", t0 - timedelta(seconds=1))])
        details = lambda: self.config.get_compliance_details_by_config_rule(  # noqa: E731
            ConfigRuleName="r")["EvaluationResults"]
        self.assertEqual(details()[0]["ComplianceType"], "NON_COMPLIANT")  # older one ignored
        put(ResultToken="r", Evaluations=[ev("db-1", "COMPLIANT", t0)])  # equal replaces
        self.assertEqual(details()[0]["ComplianceType"], "COMPLIANT")
        put(ResultToken="r", Evaluations=[ev("db-1", "NON_COMPLIANT", t0 + timedelta(hours=1))])
        self.assertEqual(len(details()), 1)
        self.assertEqual(details()[0]["ComplianceType"], "NON_COMPLIANT")

    def test_test_mode_stores_nothing(self):
        out = self.config.put_evaluations(ResultToken="r", Evaluations=[ev("db-1")], TestMode=True)
        self.assertEqual(out["FailedEvaluations"], [])
        self.assertError("NoSuchConfigRuleException",
                         self.config.get_compliance_details_by_config_rule, ConfigRuleName="r")

    def test_limits_and_validation(self):
        put = self.config.put_evaluations
        msg = self.assertError("ValidationException", put, ResultToken="r",
                               Evaluations=[ev(f"db-{i}") for i in range(101)])
        self.assertIn("less than or equal to 100", msg)
        put(ResultToken="r", Evaluations=[ev(f"db-{i}") for i in range(100)])  # 100 is fine
        msg = self.assertError("ValidationException", put, ResultToken="r",
                               Evaluations=[ev("db-1", annotation="x" * 257)])
        self.assertIn("evaluations.1.member.annotation", msg)
        put(ResultToken="r", Evaluations=[ev("db-1", annotation="x" * 256)])
        self.assertError("ValidationException", put, ResultToken="r", Evaluations=[ev("i" * 769)])
        put(ResultToken="r", Evaluations=[ev("i" * 768)])
        self.assertError("ValidationException", put, ResultToken="r",
                         Evaluations=[ev("db-1", rtype="T" * 257)])
        self.assertError("InvalidParameterValueException", put, ResultToken="r",
                         Evaluations=[ev("db-1", "INSUFFICIENT_DATA")])
        self.assertError("ValidationException", put, ResultToken="r", Evaluations=[ev("db-1", "BOGUS")])
        self.assertError("InvalidResultTokenException", put, ResultToken="", Evaluations=[ev("db-1")])
        self.assertError("InvalidResultTokenException", put, ResultToken="", Evaluations=[ev("db-1")],
                         TestMode=True)
        # What botocore would refuse client-side (the Rust SDK may still send it).
        raw = client("config", validate=False)
        no_ts = ev("db-1")
        del no_ts["OrderingTimestamp"]
        msg = self.assertError("ValidationException", raw.put_evaluations, ResultToken="r",
                               Evaluations=[no_ts])
        self.assertIn("orderingTimestamp", msg)
        self.assertError("InvalidResultTokenException", raw.put_evaluations, Evaluations=[ev("db-1")])
        # Errors are awsJson: HTTP 400 with {"__type", "message"}.
        status, body = self.raw_put({"ResultToken": "", "Evaluations": []})
        self.assertEqual((status, body["__type"]), (400, "InvalidResultTokenException"))

    def raw_put(self, payload):
        req = urllib.request.Request(
            ENDPOINT + "/", data=json.dumps(payload).encode(), method="POST",
            headers={"Content-Type": "application/x-amz-json-1.1",
                     "X-Amz-Target": "StarlingDoveService.PutEvaluations",
                     "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/"
                                      "config/aws4_request, SignedHeaders=host, Signature=x"})
        try:
            urllib.request.urlopen(req, timeout=10)
            return 200, None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def test_pagination(self):
        self.config.put_evaluations(ResultToken="r", Evaluations=[ev(f"db-{i:02}") for i in range(25)])
        seen, token, pages = [], None, 0
        while True:
            kw = {"NextToken": token} if token else {}
            out = self.config.get_compliance_details_by_config_rule(ConfigRuleName="r", Limit=10, **kw)
            pages += 1
            seen += [r["EvaluationResultIdentifier"]["EvaluationResultQualifier"]["ResourceId"]
                     for r in out["EvaluationResults"]]
            token = out.get("NextToken")
            if not token:
                break
        self.assertEqual((pages, seen), (3, [f"db-{i:02}" for i in range(25)]))
        default = self.config.get_compliance_details_by_config_rule(ConfigRuleName="r")
        self.assertEqual(len(default["EvaluationResults"]), 10)  # default Limit
        self.assertError("ValidationException", self.config.get_compliance_details_by_config_rule,
                         ConfigRuleName="r", Limit=101)
        self.assertError("InvalidNextTokenException", self.config.get_compliance_details_by_config_rule,
                         ConfigRuleName="r", NextToken="garbage")

    def test_describe_compliance_by_config_rule(self):
        self.config.put_evaluations(ResultToken="bad", Evaluations=[
            ev(f"db-{i}") for i in range(30)] + [ev("ok", "COMPLIANT")])
        self.config.put_evaluations(ResultToken="good", Evaluations=[ev("db-1", "COMPLIANT")])
        self.config.put_evaluations(ResultToken="na", Evaluations=[ev("db-1", "NOT_APPLICABLE")])
        # A rule that exists in moto but never got evaluations (managed rule: no Lambda needed).
        self.config.put_config_rule(ConfigRule={
            "ConfigRuleName": "managed", "Source": {
                "Owner": "AWS", "SourceIdentifier": "S3_BUCKET_SERVER_SIDE_ENCRYPTION_ENABLED"}})
        out = {r["ConfigRuleName"]: r["Compliance"] for r in
               self.config.describe_compliance_by_config_rule()["ComplianceByConfigRules"]}
        self.assertEqual(out["bad"], {"ComplianceType": "NON_COMPLIANT",
                                      "ComplianceContributorCount": {"CappedCount": 25,
                                                                     "CapExceeded": True}})
        self.assertEqual(out["good"], {"ComplianceType": "COMPLIANT"})
        self.assertEqual(out["na"]["ComplianceType"], "INSUFFICIENT_DATA")
        self.assertEqual(out["managed"]["ComplianceType"], "INSUFFICIENT_DATA")
        only = self.config.describe_compliance_by_config_rule(
            ConfigRuleNames=["good", "bad"], ComplianceTypes=["NON_COMPLIANT"])
        self.assertEqual([r["ConfigRuleName"] for r in only["ComplianceByConfigRules"]], ["bad"])
        self.assertError("NoSuchConfigRuleException", self.config.describe_compliance_by_config_rule,
                         ConfigRuleNames=["missing"])

    def test_by_resource(self):
        self.config.put_evaluations(ResultToken="r1", Evaluations=[ev("db-1"), ev("db-2", "COMPLIANT"),
                                                                   ev("db-3", "NOT_APPLICABLE")])
        self.config.put_evaluations(ResultToken="r2", Evaluations=[ev("db-1"), ev("db-2", "COMPLIANT")])
        d = self.config.get_compliance_details_by_resource(ResourceType="AWS::RDS::DBInstance",
                                                           ResourceId="db-1")["EvaluationResults"]
        self.assertEqual([r["EvaluationResultIdentifier"]["EvaluationResultQualifier"]["ConfigRuleName"]
                          for r in d], ["r1", "r2"])
        out = self.config.describe_compliance_by_resource(
            ResourceType="AWS::RDS::DBInstance")["ComplianceByResources"]
        self.assertEqual([(r["ResourceId"], r["Compliance"]["ComplianceType"]) for r in out],
                         [("db-1", "NON_COMPLIANT"), ("db-2", "COMPLIANT")])
        self.assertEqual(out[0]["Compliance"]["ComplianceContributorCount"]["CappedCount"], 2)
        one = self.config.describe_compliance_by_resource(
            ResourceType="AWS::RDS::DBInstance", ResourceId="db-404")["ComplianceByResources"]
        self.assertEqual(one[0]["Compliance"]["ComplianceType"], "INSUFFICIENT_DATA")
        nc = self.config.describe_compliance_by_resource(ComplianceTypes=["COMPLIANT"])
        self.assertEqual([r["ResourceId"] for r in nc["ComplianceByResources"]], ["db-2"])

    def test_state_is_per_account_and_region(self):
        self.config.put_evaluations(ResultToken="r", Evaluations=[ev("db-1")])
        for other in (client("config", region="eu-west-1"), client("config", account="111111111111")):
            self.assertError("NoSuchConfigRuleException",
                             other.get_compliance_details_by_config_rule, ConfigRuleName="r")


class Automation(Base):
    def test_start_get_describe_stop(self):
        self.make_doc()
        self.assertError("AutomationDefinitionNotFoundException", self.ssm.start_automation_execution,
                         DocumentName="Missing-Doc")
        self.make_doc("Cmd-Doc", COMMAND_DOC, "Command")
        self.assertError("AutomationDefinitionNotFoundException", self.ssm.start_automation_execution,
                         DocumentName="Cmd-Doc")
        self.assertError("InvalidAutomationExecutionParametersException",
                         self.ssm.start_automation_execution, DocumentName="Atrest-Remediate")
        self.assertError("InvalidAutomationExecutionParametersException",
                         self.ssm.start_automation_execution, DocumentName="Atrest-Remediate",
                         Parameters={"ResourceId": ["db-1"], "Bogus": ["x"]})
        eid = self.ssm.start_automation_execution(
            DocumentName="Atrest-Remediate", Parameters={"ResourceId": ["db-1"]})["AutomationExecutionId"]
        self.assertEqual(len(eid), 36)
        got = self.ssm.get_automation_execution(AutomationExecutionId=eid)["AutomationExecution"]
        self.assertEqual((got["AutomationExecutionStatus"], got["DocumentName"], got["DocumentVersion"],
                          got["Parameters"]), ("Pending", "Atrest-Remediate", "1", {"ResourceId": ["db-1"]}))
        self.assertIsInstance(got["ExecutionStartTime"], datetime)

        eid2 = self.ssm.start_automation_execution(
            DocumentName="Atrest-Remediate", Parameters={"ResourceId": ["db-2"]})["AutomationExecutionId"]
        listed = self.ssm.describe_automation_executions()["AutomationExecutionMetadataList"]
        self.assertEqual({m["AutomationExecutionId"] for m in listed}, {eid, eid2})
        only = self.ssm.describe_automation_executions(
            Filters=[{"Key": "ExecutionId", "Values": [eid2]}])["AutomationExecutionMetadataList"]
        self.assertEqual([m["AutomationExecutionId"] for m in only], [eid2])

        self.ssm.stop_automation_execution(AutomationExecutionId=eid2)
        self.assertEqual(self.ssm.get_automation_execution(AutomationExecutionId=eid2)
                         ["AutomationExecution"]["AutomationExecutionStatus"], "Cancelled")
        self.assertError("InvalidAutomationStatusUpdateException", self.ssm.stop_automation_execution,
                         AutomationExecutionId=eid2)
        self.assertError("AutomationExecutionNotFoundException", self.ssm.get_automation_execution,
                         AutomationExecutionId=str(uuid.uuid4()))

    def test_status_extension_endpoint(self):
        self.make_doc()
        eid = self.ssm.start_automation_execution(
            DocumentName="Atrest-Remediate", Parameters={"ResourceId": ["db-1"]})["AutomationExecutionId"]
        status, body = http("POST", f"/atrest-ext/automation-executions/{eid}/status",
                            {"Status": "Success", "Outputs": {"SnapshotId": ["snap-1"], "N": 3}})
        self.assertEqual((status, body["AutomationExecutionStatus"]), (200, "Success"))
        got = self.ssm.get_automation_execution(AutomationExecutionId=eid)["AutomationExecution"]
        self.assertEqual(got["Outputs"], {"SnapshotId": ["snap-1"], "N": ["3"]})
        self.assertIn("ExecutionEndTime", got)
        self.assertEqual(http("POST", f"/atrest-ext/automation-executions/{uuid.uuid4()}/status",
                              {"Status": "Success"})[0], 404)
        self.assertEqual(http("POST", f"/atrest-ext/automation-executions/{eid}/status",
                              {"Status": "Done"})[0], 400)


class Remediation(Base):
    def put_config(self, rule="rule-a"):
        self.config.put_remediation_configurations(RemediationConfigurations=[{
            "ConfigRuleName": rule, "TargetType": "SSM_DOCUMENT", "TargetId": "Atrest-Remediate",
            "Automatic": False,
            "Parameters": {"ResourceId": {"ResourceValue": {"Value": "RESOURCE_ID"}},
                           "KmsKeyId": {"StaticValue": {"Values": ["alias/atrest"]}}}}])

    def test_configurations(self):
        self.put_config()
        got = self.config.describe_remediation_configurations(
            ConfigRuleNames=["rule-a", "other"])["RemediationConfigurations"]
        self.assertEqual(len(got), 1)
        self.assertEqual((got[0]["TargetId"], got[0]["Parameters"]["KmsKeyId"]),
                         ("Atrest-Remediate", {"StaticValue": {"Values": ["alias/atrest"]}}))
        self.assertTrue(got[0]["Arn"].startswith(
            "arn:aws:config:us-east-1:123456789012:remediation-configuration/rule-a/"))
        self.assertError("ValidationException", self.config.put_remediation_configurations,
                         RemediationConfigurations=[{"ConfigRuleName": "x", "TargetType": "LAMBDA",
                                                     "TargetId": "d"}])
        self.config.delete_remediation_configuration(ConfigRuleName="rule-a")
        self.assertEqual(self.config.describe_remediation_configurations(
            ConfigRuleNames=["rule-a"])["RemediationConfigurations"], [])
        self.assertError("NoSuchRemediationConfigurationException",
                         self.config.delete_remediation_configuration, ConfigRuleName="rule-a")

    def test_execution_flow(self):
        self.make_doc()
        self.put_config()
        key = {"resourceType": "AWS::RDS::DBInstance", "resourceId": "db-1"}
        self.assertError("NoSuchRemediationConfigurationException",
                         self.config.start_remediation_execution, ConfigRuleName="nope", ResourceKeys=[key])
        self.assertError("ValidationException", self.config.start_remediation_execution,
                         ConfigRuleName="rule-a", ResourceKeys=[key] * 101)
        out = self.config.start_remediation_execution(ConfigRuleName="rule-a", ResourceKeys=[key])
        self.assertEqual(out["FailedItems"], [])

        execs = self.ssm.describe_automation_executions()["AutomationExecutionMetadataList"]
        self.assertEqual(len(execs), 1)
        eid = execs[0]["AutomationExecutionId"]
        params = self.ssm.get_automation_execution(AutomationExecutionId=eid)["AutomationExecution"]["Parameters"]
        self.assertEqual(params, {"ResourceId": ["db-1"], "KmsKeyId": ["alias/atrest"]})

        st = self.config.describe_remediation_execution_status(ConfigRuleName="rule-a")
        row = st["RemediationExecutionStatuses"][0]
        self.assertEqual((row["ResourceKey"], row["State"]), (key, "QUEUED"))
        self.assertIsInstance(row["InvocationTime"], datetime)
        http("POST", f"/atrest-ext/automation-executions/{eid}/status", {
            "Status": "Failed", "FailureMessage": "boom",
            "StepExecutions": [{"StepName": "copy", "StepStatus": "Failed", "FailureMessage": "boom"}]})
        row = self.config.describe_remediation_execution_status(
            ConfigRuleName="rule-a", ResourceKeys=[key])["RemediationExecutionStatuses"][0]
        self.assertEqual(row["State"], "FAILED")
        self.assertEqual(row["StepDetails"], [{"Name": "copy", "State": "FAILED", "ErrorMessage": "boom"}])
        self.assertError("NoSuchRemediationConfigurationException",
                         self.config.describe_remediation_execution_status, ConfigRuleName="nope")

    def test_missing_document_is_a_failed_item(self):
        self.put_config()  # its document was never created
        key = {"resourceType": "AWS::RDS::DBInstance", "resourceId": "db-1"}
        out = self.config.start_remediation_execution(ConfigRuleName="rule-a", ResourceKeys=[key])
        self.assertEqual(out["FailedItems"], [key])
        self.assertIn("Atrest-Remediate", out["FailureMessage"])


class ExtAndReset(Base):
    def test_sns_messages(self):
        sns = client("sns")
        arn = sns.create_topic(Name="atrest-alerts")["TopicArn"]
        self.assertEqual(http("GET", f"/atrest-ext/sns-messages?TopicArn={arn}"), (200, []))
        sns.publish(TopicArn=arn, Subject="Remediated db-1", Message="body 1")
        sns.publish(TopicArn=arn, Message="body 2")
        status, msgs = http("GET", f"/atrest-ext/sns-messages?TopicArn={arn}")
        self.assertEqual(status, 200)
        self.assertEqual([(m["Subject"], m["Message"]) for m in msgs],
                         [("Remediated db-1", "body 1"), (None, "body 2")])
        self.assertEqual(http("GET", f"/atrest-ext/sns-messages?TopicArn={arn}x")[0], 404)
        self.assertEqual(http("GET", "/atrest-ext/nope")[0], 404)

    def test_reset_clears_everything(self):
        self.make_doc()
        self.config.put_evaluations(ResultToken="r", Evaluations=[ev("db-1")])
        Remediation.put_config(self, "r")
        eid = self.ssm.start_automation_execution(
            DocumentName="Atrest-Remediate", Parameters={"ResourceId": ["db-1"]})["AutomationExecutionId"]
        self.assertEqual(http("POST", "/moto-api/reset")[0], 200)
        self.assertError("NoSuchConfigRuleException",
                         self.config.get_compliance_details_by_config_rule, ConfigRuleName="r")
        self.assertEqual(self.config.describe_remediation_configurations(
            ConfigRuleNames=["r"])["RemediationConfigurations"], [])
        self.assertError("AutomationExecutionNotFoundException", self.ssm.get_automation_execution,
                         AutomationExecutionId=eid)

    def test_default_amis_disabled(self):
        ec2 = client("ec2")
        self.assertEqual(ec2.describe_images(Owners=["amazon"])["Images"], [])


class S3BaseEncryption(Base):
    """atrest_moto_s3.py: every bucket has SSE-S3 as its base default encryption, as in AWS since 2023."""

    def test_a_new_bucket_has_sse_s3_and_a_delete_resets_to_it(self):
        s3 = client("s3")
        sse_s3 = [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False}]
        for region in ("us-east-1", "eu-west-1"):
            name = f"base-{uuid.uuid4().hex[:12]}"
            regional = client("s3", region=region)
            kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            regional.create_bucket(Bucket=name, **kwargs)
            rules = regional.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
            self.assertEqual(rules, sse_s3)
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": True}]})
        rule = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"][0]
        self.assertEqual(rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"], "aws:kms")
        s3.delete_bucket_encryption(Bucket=name)
        rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
        self.assertEqual(rules, sse_s3)


class S3CopyObject(Base):
    """atrest_moto_s3.py: CopyObject's documented If-Match and website-redirect behaviour, and
    the legacy (pre-2023, unencrypted) object seeding endpoint."""

    def setUp(self):
        super().setUp()
        self.s3 = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1",
                               aws_access_key_id="testing", aws_secret_access_key="testing",
                               config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}))
        self.bucket = "copy-" + uuid.uuid4().hex[:12]
        self.s3.create_bucket(Bucket=self.bucket)
        self.s3.put_object(Bucket=self.bucket, Key="a b+c", Body=b"data", WebsiteRedirectLocation="/other",
                           Metadata={"m": "1"}, StorageClass="STANDARD_IA", Tagging="t=1")

    def copy(self, **extra):
        return self.s3.copy_object(Bucket=self.bucket, Key="a b+c", CopySource={"Bucket": self.bucket, "Key": "a b+c"},
                                   ServerSideEncryption="AES256", **extra)

    def test_copy_source_if_match(self):
        etag = self.s3.head_object(Bucket=self.bucket, Key="a b+c")["ETag"]
        with self.assertRaises(ClientError) as cm:
            self.copy(CopySourceIfMatch='"0123456789abcdef0123456789abcdef"')
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], 412)
        self.copy(CopySourceIfMatch=etag)

    def test_website_redirect_is_not_copied_unless_given(self):
        self.copy()
        self.assertNotIn("WebsiteRedirectLocation", self.s3.head_object(Bucket=self.bucket, Key="a b+c"))
        self.copy(WebsiteRedirectLocation="/kept")
        self.assertEqual(self.s3.head_object(Bucket=self.bucket, Key="a b+c")["WebsiteRedirectLocation"], "/kept")

    def test_copy_keeps_metadata_and_tags_and_resets_storage_class(self):
        self.copy()
        head = self.s3.head_object(Bucket=self.bucket, Key="a b+c")
        self.assertEqual(head["Metadata"], {"m": "1"})
        self.assertNotIn("StorageClass", head)  # STANDARD
        self.assertEqual(self.s3.get_object_tagging(Bucket=self.bucket, Key="a b+c")["TagSet"], [{"Key": "t", "Value": "1"}])

    def test_get_bucket_versioning_answers_versioning_configuration(self):
        for expected in (None, "Enabled", "Suspended"):
            if expected:
                self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": expected})
            with urllib.request.urlopen(f"{ENDPOINT}/{self.bucket}?versioning") as r:
                body = r.read().decode()
            self.assertIn("<VersioningConfiguration", body)
            self.assertEqual(self.s3.get_bucket_versioning(Bucket=self.bucket).get("Status"), expected)

    def test_legacy_object_endpoint(self):
        self.assertEqual(self.s3.head_object(Bucket=self.bucket, Key="a b+c")["ServerSideEncryption"], "AES256")
        path = f"/atrest-ext/s3-legacy-object?Bucket={self.bucket}&Key=a%20b%2Bc"
        status, body = http("POST", path)
        self.assertEqual(status, 200, body)
        head = self.s3.head_object(Bucket=self.bucket, Key="a b+c")
        self.assertNotIn("ServerSideEncryption", head)
        self.assertEqual(head["LastModified"].year, 2022)
        listed = self.s3.list_objects_v2(Bucket=self.bucket)["Contents"][0]
        self.assertEqual(listed["LastModified"].year, 2022)
        self.assertEqual(http("POST", f"/atrest-ext/s3-legacy-object?Bucket={self.bucket}&Key=nope")[0], 404)
        self.s3.put_object(Bucket=self.bucket, Key="p/1", Body=b"1")
        self.s3.put_object(Bucket=self.bucket, Key="q/2", Body=b"2")
        self.assertEqual(http("POST", f"/atrest-ext/s3-legacy-object?Bucket={self.bucket}&Prefix=p/")[1]["Objects"], 1)
        self.assertNotIn("ServerSideEncryption", self.s3.head_object(Bucket=self.bucket, Key="p/1"))
        self.assertEqual(self.s3.head_object(Bucket=self.bucket, Key="q/2")["ServerSideEncryption"], "AES256")


class DynamoDbTableEncryption(Base):
    """atrest_moto_dynamodb.py: UpdateTable SSESpecification changes the table's encryption."""

    def setUp(self):
        super().setUp()
        self.ddb = client("dynamodb")
        self.kms = client("kms")
        self.table = "t-" + uuid.uuid4().hex[:12]
        self.ddb.create_table(TableName=self.table, BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])

    def sse(self):
        return self.ddb.describe_table(TableName=self.table)["Table"].get("SSEDescription")

    def test_aws_managed_key_then_a_customer_key_by_alias_then_back_to_the_aws_owned_key(self):
        self.assertIsNone(self.sse(), "a new table uses the AWS owned key")
        out = self.ddb.update_table(TableName=self.table, SSESpecification={"Enabled": True, "SSEType": "KMS"})
        managed = self.kms.describe_key(KeyId="alias/aws/dynamodb")["KeyMetadata"]["Arn"]
        self.assertEqual(out["TableDescription"]["SSEDescription"]["KMSMasterKeyArn"], managed)
        self.assertEqual(self.sse(), {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": managed})
        key = self.kms.create_key()["KeyMetadata"]
        self.kms.create_alias(AliasName="alias/ddb-test", TargetKeyId=key["KeyId"])
        self.ddb.update_table(TableName=self.table, SSESpecification={"Enabled": True, "SSEType": "KMS",
                                                                      "KMSMasterKeyId": "alias/ddb-test"})
        self.assertEqual(self.sse()["KMSMasterKeyArn"], key["Arn"], "reported as the key ARN, whatever named it")
        self.ddb.update_table(TableName=self.table, SSESpecification={"Enabled": False})
        self.assertIsNone(self.sse())

    def test_errors_and_other_updates_still_work(self):
        self.assertError("ValidationException", self.ddb.update_table, TableName=self.table,
                         SSESpecification={"Enabled": True, "KMSMasterKeyId": "alias/no-such-key"})
        self.assertIsNone(self.sse(), "a refused update changes nothing")
        self.assertError("ResourceNotFoundException", self.ddb.update_table, TableName="no-such-table",
                         SSESpecification={"Enabled": True})
        self.ddb.update_table(TableName=self.table, DeletionProtectionEnabled=True)
        self.assertTrue(self.ddb.describe_table(TableName=self.table)["Table"]["DeletionProtectionEnabled"])
        self.assertIsNone(self.sse())


class KmsKeyRotation(Base):
    """atrest_moto_kms_rotation.py: the rotation period and the keys KMS refuses to rotate."""

    def setUp(self):
        super().setUp()
        self.kms = client("kms")
        self.key = self.kms.create_key()["KeyMetadata"]

    def test_period_default_custom_and_disable(self):
        status = self.kms.get_key_rotation_status(KeyId=self.key["KeyId"])
        self.assertEqual((status["KeyRotationEnabled"], status["KeyId"]), (False, self.key["Arn"]))
        self.assertNotIn("RotationPeriodInDays", status)
        self.kms.enable_key_rotation(KeyId=self.key["KeyId"])
        status = self.kms.get_key_rotation_status(KeyId=self.key["KeyId"])
        self.assertEqual((status["KeyRotationEnabled"], status["RotationPeriodInDays"]), (True, 365))
        self.assertGreater(status["NextRotationDate"].timestamp(), time.time() + 364 * 86400)
        self.kms.enable_key_rotation(KeyId=self.key["Arn"], RotationPeriodInDays=90)
        self.assertEqual(self.kms.get_key_rotation_status(KeyId=self.key["KeyId"])["RotationPeriodInDays"], 90)
        self.kms.disable_key_rotation(KeyId=self.key["KeyId"])
        status = self.kms.get_key_rotation_status(KeyId=self.key["KeyId"])
        self.assertEqual(status["KeyRotationEnabled"], False)
        self.assertNotIn("RotationPeriodInDays", status)

    def test_what_kms_refuses(self):
        no_validation = client("kms", validate=False)
        for days in (89, 2561):
            self.assertError("ValidationException", no_validation.enable_key_rotation, KeyId=self.key["KeyId"],
                             RotationPeriodInDays=days)
        rsa = self.kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        self.assertError("UnsupportedOperationException", self.kms.enable_key_rotation, KeyId=rsa)
        self.kms.disable_key(KeyId=self.key["KeyId"])
        self.assertError("KMSInvalidStateException", self.kms.enable_key_rotation, KeyId=self.key["KeyId"])
        self.assertFalse(self.kms.get_key_rotation_status(KeyId=self.key["KeyId"])["KeyRotationEnabled"])
        self.assertError("NotFoundException", self.kms.get_key_rotation_status,
                         KeyId="11111111-2222-3333-4444-555555555555")


class EbsDefaultEncryption(Base):
    """atrest_moto_ec2.py: the account/Region settings for EBS encryption by default."""

    def test_defaults(self):
        ec2 = client("ec2")
        self.assertFalse(ec2.get_ebs_encryption_by_default()["EbsEncryptionByDefault"])
        self.assertEqual(ec2.get_ebs_default_kms_key_id()["KmsKeyId"], "alias/aws/ebs")

    def test_enable_disable(self):
        ec2 = client("ec2")
        self.assertTrue(ec2.enable_ebs_encryption_by_default()["EbsEncryptionByDefault"])
        self.assertTrue(ec2.get_ebs_encryption_by_default()["EbsEncryptionByDefault"])
        self.assertFalse(ec2.disable_ebs_encryption_by_default()["EbsEncryptionByDefault"])
        self.assertFalse(ec2.get_ebs_encryption_by_default()["EbsEncryptionByDefault"])

    def test_modify_and_reset_the_default_key(self):
        ec2, kms = client("ec2"), client("kms")
        key = kms.create_key()["KeyMetadata"]
        kms.create_alias(AliasName="alias/mine", TargetKeyId=key["KeyId"])
        for ref in (key["KeyId"], key["Arn"], "alias/mine"):
            self.assertEqual(ec2.modify_ebs_default_kms_key_id(KmsKeyId=ref)["KmsKeyId"], key["Arn"])
            self.assertEqual(ec2.get_ebs_default_kms_key_id()["KmsKeyId"], key["Arn"])
        ec2.enable_ebs_encryption_by_default()
        self.assertEqual(ec2.get_ebs_default_kms_key_id()["KmsKeyId"], key["Arn"], "enabling keeps the key")
        self.assertEqual(ec2.reset_ebs_default_kms_key_id()["KmsKeyId"],
                         "arn:aws:kms:us-east-1:123456789012:alias/aws/ebs")
        self.assertEqual(ec2.get_ebs_default_kms_key_id()["KmsKeyId"], "alias/aws/ebs")
        self.assertTrue(ec2.get_ebs_encryption_by_default()["EbsEncryptionByDefault"], "resetting keeps the flag")

    def test_errors_and_dry_run(self):
        ec2 = client("ec2", validate=False)
        self.assertError("MissingParameter", ec2.modify_ebs_default_kms_key_id)
        self.assertError("InvalidParameterValue", ec2.modify_ebs_default_kms_key_id, KmsKeyId="alias/nope")
        with self.assertRaises(ClientError) as cm:
            ec2.enable_ebs_encryption_by_default(DryRun=True)
        self.assertEqual(cm.exception.response["Error"]["Code"], "DryRunOperation")
        self.assertFalse(ec2.get_ebs_encryption_by_default()["EbsEncryptionByDefault"])

    def test_state_is_per_account_and_region(self):
        client("ec2").enable_ebs_encryption_by_default()
        key = client("kms").create_key()["KeyMetadata"]["Arn"]
        client("ec2").modify_ebs_default_kms_key_id(KmsKeyId=key)
        for other in (client("ec2", region="eu-west-1"), client("ec2", account="111111111111")):
            self.assertFalse(other.get_ebs_encryption_by_default()["EbsEncryptionByDefault"])
            self.assertEqual(other.get_ebs_default_kms_key_id()["KmsKeyId"], "alias/aws/ebs")

    def test_reset_clears_the_settings(self):
        client("ec2").enable_ebs_encryption_by_default()
        client("ec2").modify_ebs_default_kms_key_id(KmsKeyId=client("kms").create_key()["KeyMetadata"]["KeyId"])
        self.assertEqual(http("POST", "/moto-api/reset")[0], 200)
        self.assertFalse(client("ec2").get_ebs_encryption_by_default()["EbsEncryptionByDefault"])
        self.assertEqual(client("ec2").get_ebs_default_kms_key_id()["KmsKeyId"], "alias/aws/ebs")


class CreateVolumeClientToken(Base):
    """atrest_moto_ec2.py: CreateVolume honours ClientToken as the EC2 API reference documents."""

    def volumes(self, ec2):
        return sorted(v["VolumeId"] for v in ec2.describe_volumes()["Volumes"])

    def test_the_same_token_and_parameters_return_the_same_volume(self):
        ec2 = client("ec2")
        ask = dict(AvailabilityZone="us-east-1a", Size=8, VolumeType="gp3", ClientToken="atrest-snap-1",
                   TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "k", "Value": "v"}]}])
        first = ec2.create_volume(**ask)
        again = ec2.create_volume(**ask)
        self.assertEqual(again["VolumeId"], first["VolumeId"])
        self.assertEqual(self.volumes(ec2), [first["VolumeId"]], "the retry created nothing")

    def test_the_same_token_with_other_parameters_is_a_mismatch(self):
        ec2 = client("ec2")
        first = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, ClientToken="t")
        self.assertError("IdempotentParameterMismatch", ec2.create_volume,
                         AvailabilityZone="us-east-1a", Size=9, ClientToken="t")
        self.assertError("IdempotentParameterMismatch", ec2.create_volume, AvailabilityZone="us-east-1a", Size=8,
                         ClientToken="t", TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "k", "Value": "v"}]}])
        self.assertEqual(self.volumes(ec2), [first["VolumeId"]])

    def test_other_tokens_no_token_and_other_regions_make_new_volumes(self):
        ec2 = client("ec2")
        a = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, ClientToken="a")["VolumeId"]
        b = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, ClientToken="b")["VolumeId"]
        # botocore fills in a fresh token when none is given (CreateVolume's is an idempotency token)
        c = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8)["VolumeId"]
        self.assertEqual(len({a, b, c}), 3)
        west = client("ec2", region="us-west-2")
        d = west.create_volume(AvailabilityZone="us-west-2a", Size=8, ClientToken="a")["VolumeId"]
        self.assertNotEqual(d, a)
        self.assertEqual(self.volumes(west), [d])

    def test_the_token_of_a_deleted_volume_is_spent(self):
        ec2 = client("ec2")
        ask = dict(AvailabilityZone="us-east-1a", Size=8, ClientToken="atrest-snap-gone-0")
        first = ec2.create_volume(**ask)["VolumeId"]
        ec2.delete_volume(VolumeId=first)
        with self.assertRaises(ClientError) as cm:
            ec2.create_volume(**ask)
        self.assertEqual(cm.exception.response["Error"]["Code"], "IdempotentParameterMismatch")
        self.assertIn("already deleted", cm.exception.response["Error"]["Message"])
        self.assertEqual(self.volumes(ec2), [], "nothing was created")

    def test_a_dry_run_records_no_token_and_a_reset_forgets_tokens(self):
        ec2 = client("ec2")
        with self.assertRaises(ClientError) as cm:
            ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, ClientToken="t", DryRun=True)
        self.assertEqual(cm.exception.response["Error"]["Code"], "DryRunOperation")
        first = ec2.create_volume(AvailabilityZone="us-east-1a", Size=9, ClientToken="t")["VolumeId"]
        self.assertEqual(http("POST", "/moto-api/reset")[0], 200)
        second = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, ClientToken="t")["VolumeId"]
        self.assertNotEqual(first, second)


class RdsCorrections(Base):
    """atrest_moto_rds.py."""

    def test_an_existing_cluster_is_not_replaced_by_a_create_or_restore(self):
        rds, kms = client("rds"), client("kms")
        key = kms.create_key()["KeyMetadata"]["Arn"]
        rds.create_db_cluster(DBClusterIdentifier="src", Engine="aurora-mysql", MasterUsername="admin",
                              MasterUserPassword="correct-horse", StorageEncrypted=False)
        rds.create_db_cluster_snapshot(DBClusterIdentifier="src", DBClusterSnapshotIdentifier="snap")
        restored = rds.restore_db_cluster_from_snapshot(
            DBClusterIdentifier="dst", SnapshotIdentifier="snap", Engine="aurora-mysql", KmsKeyId=key)
        self.assertTrue(restored["DBCluster"]["StorageEncrypted"])
        self.assertError("DBClusterAlreadyExistsFault", rds.restore_db_cluster_from_snapshot,
                         DBClusterIdentifier="dst", SnapshotIdentifier="snap", Engine="aurora-mysql", KmsKeyId=key)
        self.assertError("DBClusterAlreadyExistsFault", rds.create_db_cluster, DBClusterIdentifier="dst",
                         Engine="aurora-mysql", MasterUsername="admin", MasterUserPassword="correct-horse")
        still = rds.describe_db_clusters(DBClusterIdentifier="dst")["DBClusters"][0]
        self.assertTrue(still["StorageEncrypted"], "the retried restore left the encrypted cluster alone")
        self.assertEqual(still["KmsKeyId"], key)

    def test_a_db_snapshot_needs_an_available_instance(self):
        rds = client("rds")
        rds.create_db_instance(DBInstanceIdentifier="db1", DBInstanceClass="db.t3.micro", Engine="postgres",
                               MasterUsername="admin", MasterUserPassword="correct-horse", AllocatedStorage=20)
        rds.create_db_snapshot(DBInstanceIdentifier="db1", DBSnapshotIdentifier="running")
        rds.stop_db_instance(DBInstanceIdentifier="db1")
        self.assertError("InvalidDBInstanceState", rds.create_db_snapshot,
                         DBInstanceIdentifier="db1", DBSnapshotIdentifier="stopped")
        ids = [s["DBSnapshotIdentifier"] for s in rds.describe_db_snapshots(DBInstanceIdentifier="db1", SnapshotType="manual")["DBSnapshots"]]
        self.assertEqual(ids, ["running"])
        # Stopping with a snapshot still takes it while the instance runs.
        rds.start_db_instance(DBInstanceIdentifier="db1")
        rds.stop_db_instance(DBInstanceIdentifier="db1", DBSnapshotIdentifier="on-stop")

    def test_a_db_instance_restore_carries_neither_iam_roles_nor_a_managed_password(self):
        rds = client("rds")
        rds.create_db_instance(DBInstanceIdentifier="src", DBInstanceClass="db.t3.micro", Engine="postgres",
                               MasterUsername="admin", ManageMasterUserPassword=True, AllocatedStorage=20)
        rds.add_role_to_db_instance(DBInstanceIdentifier="src", RoleArn="arn:aws:iam::123456789012:role/s3",
                                    FeatureName="s3Import")
        rds.create_db_snapshot(DBInstanceIdentifier="src", DBSnapshotIdentifier="snap")
        copy = rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="copy", DBSnapshotIdentifier="snap")
        self.assertEqual(copy["DBInstance"].get("AssociatedRoles", []), [])
        self.assertNotIn("MasterUserSecret", copy["DBInstance"])
        source = rds.describe_db_instances(DBInstanceIdentifier="src")["DBInstances"][0]
        self.assertEqual(len(source["AssociatedRoles"]), 1, "the source keeps its role")
        self.assertIn("MasterUserSecret", source, "and its secret")
        # What the fix then does: the copy gets them by AddRoleToDBInstance and ModifyDBInstance.
        rds.add_role_to_db_instance(DBInstanceIdentifier="copy", RoleArn="arn:aws:iam::123456789012:role/s3",
                                    FeatureName="s3Import")
        rds.modify_db_instance(DBInstanceIdentifier="copy", ManageMasterUserPassword=True, ApplyImmediately=True)
        copy = rds.describe_db_instances(DBInstanceIdentifier="copy")["DBInstances"][0]
        self.assertNotEqual(copy["MasterUserSecret"]["SecretArn"], source["MasterUserSecret"]["SecretArn"])

    def test_an_unencrypted_cluster_snapshot_copy_with_a_key_is_an_error(self):
        # CopyDBClusterSnapshot API reference: "If you copy an unencrypted DB cluster snapshot and
        # specify a value for the KmsKeyId parameter, an error is returned."
        rds, kms = client("rds"), client("kms")
        key = kms.create_key()["KeyMetadata"]["Arn"]
        rds.create_db_cluster(DBClusterIdentifier="src", Engine="aurora-mysql", MasterUsername="admin",
                              MasterUserPassword="correct-horse", StorageEncrypted=False)
        rds.create_db_cluster_snapshot(DBClusterIdentifier="src", DBClusterSnapshotIdentifier="plain")
        self.assertError("InvalidParameterCombination", rds.copy_db_cluster_snapshot,
                         SourceDBClusterSnapshotIdentifier="plain", TargetDBClusterSnapshotIdentifier="copy",
                         KmsKeyId=key)
        listed = rds.describe_db_cluster_snapshots(SnapshotType="manual")["DBClusterSnapshots"]
        self.assertNotIn("copy", [s["DBClusterSnapshotIdentifier"] for s in listed], "no copy was made")
        # Without a key the copy is allowed (and stays unencrypted); an encrypted source can be
        # copied to a new key.
        plain_copy = rds.copy_db_cluster_snapshot(SourceDBClusterSnapshotIdentifier="plain",
                                                  TargetDBClusterSnapshotIdentifier="plain-copy")
        self.assertFalse(plain_copy["DBClusterSnapshot"]["StorageEncrypted"])
        rds.restore_db_cluster_from_snapshot(DBClusterIdentifier="enc", SnapshotIdentifier="plain",
                                             Engine="aurora-mysql", KmsKeyId=key)
        rds.create_db_cluster_snapshot(DBClusterIdentifier="enc", DBClusterSnapshotIdentifier="enc-snap")
        other = kms.create_key()["KeyMetadata"]["Arn"]
        rekeyed = rds.copy_db_cluster_snapshot(SourceDBClusterSnapshotIdentifier="enc-snap",
                                               TargetDBClusterSnapshotIdentifier="rekeyed", KmsKeyId=other)
        self.assertTrue(rekeyed["DBClusterSnapshot"]["StorageEncrypted"])

    def test_a_restored_cluster_has_no_deletion_protection_unless_asked(self):
        # RestoreDBClusterFromSnapshot API reference, DeletionProtection: "By default, deletion
        # protection isn't enabled."
        rds = client("rds")
        rds.create_db_cluster(DBClusterIdentifier="guarded", Engine="aurora-mysql", MasterUsername="admin",
                              MasterUserPassword="correct-horse", DeletionProtection=True)
        rds.create_db_cluster_snapshot(DBClusterIdentifier="guarded", DBClusterSnapshotIdentifier="snap")
        for name, extra in [("default", {}), ("off", {"DeletionProtection": False})]:
            restored = rds.restore_db_cluster_from_snapshot(DBClusterIdentifier=name, SnapshotIdentifier="snap",
                                                            Engine="aurora-mysql", **extra)
            self.assertFalse(restored["DBCluster"]["DeletionProtection"], name)
            rds.delete_db_cluster(DBClusterIdentifier=name, SkipFinalSnapshot=True)
        on = rds.restore_db_cluster_from_snapshot(DBClusterIdentifier="on", SnapshotIdentifier="snap",
                                                  Engine="aurora-mysql", DeletionProtection=True)
        self.assertTrue(on["DBCluster"]["DeletionProtection"])


class ParentPid(unittest.TestCase):
    def test_exits_when_parent_dies(self):
        # A throwaway parent starts a server with --parent-pid, prints its pid, sleeps.
        script = (
            "import subprocess, sys, time\n"
            f"p = subprocess.Popen([sys.executable, {SERVER!r}, '-p', sys.argv[1], '--parent-pid', "
            "str(__import__('os').getpid())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(600)\n")
        parent = subprocess.Popen([sys.executable, "-c", script, str(free_port())],
                                  stdout=subprocess.PIPE, text=True)
        server_pid = int(parent.stdout.readline())
        parent.stdout.close()
        time.sleep(1)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        os.kill(server_pid, 9)
        self.fail("server outlived its --parent-pid")


class FirehoseCorrections(Base):
    """atrest_moto_firehose.py: SSE for Direct PUT streams only; the S3 description's defaults."""

    def setUp(self):
        super().setUp()
        self.firehose = client("firehose")
        self.kinesis = client("kinesis")
        self.s3_destination = {"RoleARN": "arn:aws:iam::123456789012:role/firehose", "BucketARN": "arn:aws:s3:::landing"}

    def test_only_a_direct_put_stream_takes_server_side_encryption(self):
        self.kinesis.create_stream(StreamName="source", ShardCount=1)
        source_arn = self.kinesis.describe_stream_summary(StreamName="source")["StreamDescriptionSummary"]["StreamARN"]
        self.firehose.create_delivery_stream(
            DeliveryStreamName="fed", DeliveryStreamType="KinesisStreamAsSource",
            KinesisStreamSourceConfiguration={"KinesisStreamARN": source_arn, "RoleARN": self.s3_destination["RoleARN"]},
            ExtendedS3DestinationConfiguration=self.s3_destination)
        self.firehose.create_delivery_stream(DeliveryStreamName="direct", DeliveryStreamType="DirectPut",
                                             ExtendedS3DestinationConfiguration=self.s3_destination)
        message = self.assertError("InvalidArgumentException", self.firehose.start_delivery_stream_encryption,
                                   DeliveryStreamName="fed",
                                   DeliveryStreamEncryptionConfigurationInput={"KeyType": "AWS_OWNED_CMK"})
        self.assertIn("DirectPut", message)
        fed = self.firehose.describe_delivery_stream(DeliveryStreamName="fed")["DeliveryStreamDescription"]
        self.assertNotIn("DeliveryStreamEncryptionConfiguration", fed, "a refused change changes nothing")
        self.firehose.start_delivery_stream_encryption(DeliveryStreamName="direct",
                                                       DeliveryStreamEncryptionConfigurationInput={"KeyType": "AWS_OWNED_CMK"})
        direct = self.firehose.describe_delivery_stream(DeliveryStreamName="direct")["DeliveryStreamDescription"]
        self.assertEqual(direct["DeliveryStreamEncryptionConfiguration"]["Status"], "ENABLED")
        self.assertError("ResourceNotFoundException", self.firehose.start_delivery_stream_encryption,
                         DeliveryStreamName="no-such-stream",
                         DeliveryStreamEncryptionConfigurationInput={"KeyType": "AWS_OWNED_CMK"})

    def test_the_s3_description_carries_the_documented_defaults_and_keeps_given_values(self):
        self.firehose.create_delivery_stream(DeliveryStreamName="defaults", ExtendedS3DestinationConfiguration=self.s3_destination)
        self.firehose.create_delivery_stream(
            DeliveryStreamName="given", S3DestinationConfiguration=dict(self.s3_destination, CompressionFormat="GZIP",
                                                                        BufferingHints={"SizeInMBs": 64, "IntervalInSeconds": 60}))
        d = self.firehose.describe_delivery_stream(DeliveryStreamName="defaults")["DeliveryStreamDescription"]["Destinations"][0]
        for description in (d["ExtendedS3DestinationDescription"], d["S3DestinationDescription"]):
            self.assertEqual(description["CompressionFormat"], "UNCOMPRESSED")
            self.assertEqual(description["BufferingHints"], {"SizeInMBs": 5, "IntervalInSeconds": 300})
            self.assertEqual(description["EncryptionConfiguration"], {"NoEncryptionConfig": "NoEncryption"})
        g = self.firehose.describe_delivery_stream(DeliveryStreamName="given")["DeliveryStreamDescription"]["Destinations"][0]
        self.assertEqual(g["S3DestinationDescription"]["CompressionFormat"], "GZIP")
        self.assertEqual(g["S3DestinationDescription"]["BufferingHints"], {"SizeInMBs": 64, "IntervalInSeconds": 60})


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed - len(result.skipped)} passed, {failed} failed"
          + (f", {len(result.skipped)} skipped" if result.skipped else ""))
    sys.exit(1 if failed or not result.testsRun else 0)
