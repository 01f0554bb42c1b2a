#!/usr/bin/env python3
"""The StackSet rollout (tools/stackset.py), checked offline.

StackSets with service-managed permissions reject templates with transforms, and Lambda code must
come from a bucket in each function's Region. These tests package template.yaml with stand-in
bootstrap.zip files and check what AWS would check before it deploys anything: no transform and
no SAM resource left, every function's code in the per-Region bucket under the hash of its own
zip, nothing Region-specific baked in, every SAM resource accounted for, a template cfn-lint
accepts, and rollout commands that pick TemplateURL when the body is over 51,200 bytes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import unittest
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import stackset  # noqa: E402
from samtranslator.yaml_helper import yaml_parse  # noqa: E402


def fake_artifacts(root: Path, binaries: set[str]) -> dict[str, str]:
    """One distinct bootstrap.zip per binary; returns binary -> sha256 of its zip."""
    digests = {}
    for binary in sorted(binaries):
        folder = root / binary
        folder.mkdir(parents=True)
        with zipfile.ZipFile(folder / "bootstrap.zip", "w") as zf:
            zf.writestr("bootstrap", f"#!/bin/sh\n# {binary}\n")
        digests[binary] = hashlib.sha256((folder / "bootstrap.zip").read_bytes()).hexdigest()
    return digests


class StackSetPackage(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        root = Path(cls.tmp.name)
        cls.sam = yaml_parse((REPO / "template.yaml").read_text())
        cls.binaries = stackset.function_binaries(cls.sam)
        cls.digests = fake_artifacts(root / "lambda", set(cls.binaries.values()))
        cls.out = root / "stackset"
        rc = stackset.main([
            "--artifacts", str(root / "lambda"), "--out", str(cls.out),
            "--bucket-prefix", "example-org-atrest", "--org-id", "o-a1b2c3d4e5",
            "--region", "eu-west-1", "--region", "us-east-1",
        ])
        assert rc == 0
        cls.cfn = json.loads((cls.out / "template.json").read_text())

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def test_no_transform_and_no_sam_resource_is_left(self) -> None:
        self.assertNotIn("Transform", self.cfn)
        self.assertNotIn("Globals", self.cfn)
        left = [k for k, r in self.cfn["Resources"].items() if r["Type"].startswith("AWS::Serverless::")]
        self.assertEqual(left, [])

    def test_every_function_runs_its_own_zip_from_the_bucket_of_its_region(self) -> None:
        self.assertEqual(len(self.binaries), len(set(self.binaries.values())), "one binary per function")
        for logical_id, binary in self.binaries.items():
            function = self.cfn["Resources"][logical_id]
            self.assertEqual(function["Type"], "AWS::Lambda::Function")
            code = function["Properties"]["Code"]
            self.assertEqual(code["S3Bucket"], {"Fn::Sub": "${ArtifactBucketPrefix}-${AWS::Region}"}, logical_id)
            self.assertEqual(code["S3Key"], f"atrest/{binary}-{self.digests[binary][:20]}.zip", logical_id)
            published = self.out / "artifacts" / code["S3Key"].removeprefix("atrest/")
            self.assertEqual(hashlib.sha256(published.read_bytes()).hexdigest(), self.digests[binary])
            self.assertNotIn("BuildMethod", function.get("Metadata", {}))

    def test_functions_keep_the_settings_sam_gave_them(self) -> None:
        globals_ = self.sam["Globals"]["Function"]
        for logical_id in self.binaries:
            sam_props = self.sam["Resources"][logical_id]["Properties"]
            props = self.cfn["Resources"][logical_id]["Properties"]
            self.assertEqual(props["Role"], sam_props["Role"], logical_id)
            self.assertEqual(props["Runtime"], globals_["Runtime"])
            self.assertEqual(props["Architectures"], globals_["Architectures"])
            self.assertEqual(props["Timeout"], sam_props.get("Timeout", globals_["Timeout"]), logical_id)
            self.assertEqual(props["LoggingConfig"], sam_props["LoggingConfig"], logical_id)

    def test_every_plain_resource_parameter_and_output_is_carried(self) -> None:
        for logical_id, resource in self.sam["Resources"].items():
            if resource["Type"].startswith("AWS::Serverless::"):
                continue
            self.assertIn(logical_id, self.cfn["Resources"])
            self.assertEqual(self.cfn["Resources"][logical_id]["Type"], resource["Type"])
            self.assertEqual(self.cfn["Resources"][logical_id].get("Condition"), resource.get("Condition"), logical_id)
        self.assertEqual(set(self.cfn["Parameters"]), set(self.sam["Parameters"]) | {"ArtifactBucketPrefix"})
        self.assertEqual(set(self.cfn["Outputs"]), set(self.sam.get("Outputs", {})))
        self.assertEqual(self.cfn.get("Rules"), self.sam.get("Rules"))

    def test_nothing_region_specific_is_baked_in(self) -> None:
        body = json.dumps(self.cfn)
        self.assertNotIn(stackset.REGION_SENTINEL, body)
        for region in ("us-east-1", "eu-west-1"):
            self.assertNotIn(region, body)

    def test_cfn_lint_accepts_the_template(self) -> None:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "cfn-lint"), str(self.out / "template.json")],
            capture_output=True, text=True, check=False,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_rollout_uses_a_template_url_when_the_body_is_too_large(self) -> None:
        size = (self.out / "template.json").stat().st_size
        rollout = (self.out / "rollout.sh").read_text()
        subprocess.run(["bash", "-n", str(self.out / "rollout.sh")], check=True)
        if size > stackset.TEMPLATE_BODY_LIMIT:
            self.assertIn("--template-url", rollout)
            self.assertNotIn("--template-body", rollout)
        self.assertIn("--permission-model SERVICE_MANAGED", rollout)
        self.assertIn("--capabilities CAPABILITY_IAM", rollout)
        self.assertIn("REGIONS=(eu-west-1 us-east-1)", rollout)
        self.assertLess(size, stackset.TEMPLATE_URL_LIMIT)

    def test_the_rollout_template_body_path_for_a_small_template(self) -> None:
        rollout = stackset.rollout_commands("p", ["us-east-1"], "atrest/", stackset.TEMPLATE_BODY_LIMIT)
        self.assertIn("--template-body file://template.json", rollout)

    def test_bucket_policies_let_only_the_organization_read_the_code(self) -> None:
        for region in ("eu-west-1", "us-east-1"):
            policy = json.loads((self.out / f"bucket-policy-{region}.json").read_text())
            read, tls = policy["Statement"]
            self.assertEqual(read["Action"], "s3:GetObject")
            self.assertEqual(read["Resource"], f"arn:aws:s3:::example-org-atrest-{region}/atrest/*")
            self.assertEqual(read["Condition"], {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}})
            self.assertEqual(tls["Effect"], "Deny")
            self.assertEqual(tls["Condition"], {"Bool": {"aws:SecureTransport": "false"}})


class StackSetRefusals(unittest.TestCase):
    def test_missing_packages_name_every_missing_zip(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaises(SystemExit) as refused:
                stackset.main(["--artifacts", tmp, "--out", f"{tmp}/out", "--bucket-prefix", "p", "--org-id", "o-a1b2c3d4e5"])
            self.assertIn("make package", str(refused.exception))
            self.assertIn("fix-s3-enable-default-encryption/bootstrap.zip", str(refused.exception))

    def test_a_managed_policy_lookup_is_refused_rather_than_calling_iam(self) -> None:
        with self.assertRaises(SystemExit):
            stackset.NoManagedPolicies().load()


if __name__ == "__main__":
    unittest.main(verbosity=1)
