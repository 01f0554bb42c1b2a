#!/usr/bin/env python3
"""Turn template.yaml into a CloudFormation StackSet: no transform, Lambda code from a bucket per Region.

Why this exists (README, "Many accounts and regions"):
- StackSets with service-managed permissions cannot deploy templates that use transforms or macros
  with their default execution role, and `Transform: AWS::Serverless-2016-10-31` is one.
- A Lambda function's code must sit in an S3 bucket in the function's own Region (the bucket may
  belong to another account), so one StackSet deployed to many Regions needs one artifact bucket
  per Region: `<ArtifactBucketPrefix>-<Region>`.
- CreateStackSet takes a TemplateBody of at most 51,200 bytes; larger templates go through a
  TemplateURL (at most 1 MB), which is where this template goes.

What it does, offline (no AWS call, no credentials):
1. translates the SAM template with AWS's own translator (aws-sam-translator),
2. points every AWS::Lambda::Function at s3://<ArtifactBucketPrefix>-${AWS::Region}/<prefix><binary>-<sha256>.zip,
   naming each object by the hash of its bootstrap.zip so a new build never reuses an old key,
3. writes the template, the artifacts, one bucket policy per Region (read access for the
   organization's accounts only) and the commands that upload and roll out.

    tools/stackset.py --artifacts <dir with <binary>/bootstrap.zip> --out dist/stackset \
        --bucket-prefix my-org-atrest --org-id o-xxxxxxxxxx --region us-east-1 --region eu-west-1 \
        [--template template.yaml] [--key-prefix atrest/]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

ARTIFACT_PARAMETER = "ArtifactBucketPrefix"
REGION_SENTINEL = "xx-atrest-sentinel-1"
TEMPLATE_BODY_LIMIT = 51_200
TEMPLATE_URL_LIMIT = 1_000_000


class NoManagedPolicies(ManagedPolicyLoader):
    """Every function names its own role; a managed-policy lookup would be an IAM call, so refuse it."""

    def __init__(self) -> None:  # no IAM client: this tool never calls AWS
        pass

    def load(self) -> dict[str, str]:
        raise SystemExit(
            "stackset: the template asks SAM to resolve a managed policy by name (an IAM call); "
            "give the function an explicit Role or a full policy ARN"
        )


def function_binaries(sam: dict[str, Any]) -> dict[str, str]:
    """Logical id of every AWS::Serverless::Function -> the cargo binary it runs."""
    binaries = {}
    for logical_id, resource in sam.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        if not binary:
            raise SystemExit(f"stackset: {logical_id} has no Metadata.BuildProperties.Binary")
        binaries[logical_id] = binary
    return binaries


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_keys(binaries: dict[str, str], artifacts: Path, key_prefix: str) -> dict[str, tuple[Path, str]]:
    """Binary -> (its bootstrap.zip, the S3 key it is published under)."""
    keys = {}
    missing = []
    for binary in sorted(set(binaries.values())):
        zip_path = artifacts / binary / "bootstrap.zip"
        if not zip_path.is_file():
            missing.append(str(zip_path))
            continue
        keys[binary] = (zip_path, f"{key_prefix}{binary}-{sha256(zip_path)[:20]}.zip")
    if missing:
        raise SystemExit("stackset: build the Lambda packages first (make package); missing:\n  " + "\n  ".join(missing))
    return keys


def translate(sam: dict[str, Any], binaries: dict[str, str], keys: dict[str, tuple[Path, str]]) -> dict[str, Any]:
    sam = copy.deepcopy(sam)
    for logical_id, binary in binaries.items():
        # A placeholder the translator accepts as-is; replaced below by the per-Region bucket.
        sam["Resources"][logical_id]["Properties"]["CodeUri"] = {"Bucket": "atrest-placeholder", "Key": keys[binary][1]}
    # The translator wants a Region. A sentinel proves none of it is baked into the output: the
    # one template must work in every Region it is deployed to.
    # boto3.Session only carries the name here: the translator makes no AWS call for this template.
    session = boto3.session.Session(region_name=REGION_SENTINEL)
    translator = Translator(None, Parser(), boto_session=session)
    cfn = translator.translate(sam, parameter_values={}, get_managed_policy_map=NoManagedPolicies().load)
    if REGION_SENTINEL in json.dumps(cfn):
        raise SystemExit("stackset: the translation resolved AWS::Region into a literal; it would pin one Region")

    cfn.setdefault("Parameters", {})[ARTIFACT_PARAMETER] = {
        "Type": "String",
        "Description": (
            "Lambda code comes from the bucket <ArtifactBucketPrefix>-<Region> in each Region the "
            "StackSet deploys to (tools/stackset.py writes the objects and the upload commands)."
        ),
        # The bucket name is the prefix plus a Region of up to 14 characters and a hyphen.
        "AllowedPattern": "^[a-z0-9][a-z0-9.-]{1,46}$",
    }
    interface = cfn.get("Metadata", {}).get("AWS::CloudFormation::Interface")
    if interface is not None:
        interface.setdefault("ParameterGroups", []).insert(
            0, {"Label": {"default": "StackSet artifacts"}, "Parameters": [ARTIFACT_PARAMETER]}
        )

    bucket = {"Fn::Sub": "${" + ARTIFACT_PARAMETER + "}-${AWS::Region}"}
    for logical_id in binaries:
        function = cfn["Resources"][logical_id]
        if function["Type"] != "AWS::Lambda::Function":
            raise SystemExit(f"stackset: {logical_id} translated to {function['Type']}, not AWS::Lambda::Function")
        code = function["Properties"]["Code"]
        if code.get("S3Bucket") != "atrest-placeholder":
            raise SystemExit(f"stackset: unexpected code location for {logical_id}: {code}")
        code["S3Bucket"] = bucket
        # SAM build metadata means nothing outside `sam build`.
        function.get("Metadata", {}).pop("BuildMethod", None)
        function.get("Metadata", {}).pop("BuildProperties", None)
    return cfn


def bucket_policy(bucket: str, key_prefix: str, org_id: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                # CloudFormation reads the code with the StackSet execution role of each member
                # account; only accounts of this organization may.
                "Sid": "OrganizationReadsLambdaCode",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/{key_prefix}*",
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": org_id}},
            },
            {
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }


def rollout_commands(bucket_prefix: str, regions: list[str], key_prefix: str, template_size: int) -> str:
    home = regions[0]
    lines = [
        "#!/usr/bin/env bash",
        "# Upload the Lambda code to one bucket per Region and create the StackSet (service-managed",
        "# permissions, from the management or a delegated administrator account).",
        "# Create each bucket <prefix>-<region> in its Region once, with default encryption, Block Public",
        "# Access and bucket-policy-<region>.json. Set OU (target organizational unit ids) and ALERT_EMAIL.",
        "set -euo pipefail",
        ': "${OU:?set OU to the target OU ids}" "${ALERT_EMAIL:?set ALERT_EMAIL}"',
        'cd "$(dirname "$0")"',
        f"PREFIX={bucket_prefix}",
        f"REGIONS=({' '.join(regions)})",
        'for region in "${REGIONS[@]}"; do',
        f'  aws s3 sync artifacts/ "s3://$PREFIX-$region/{key_prefix}" --region "$region"',
        "done",
    ]
    if template_size > TEMPLATE_BODY_LIMIT:
        lines += [
            f"# The template is {template_size:,} bytes, over CreateStackSet's {TEMPLATE_BODY_LIMIT:,}-byte TemplateBody limit:",
            "# it goes through a TemplateURL.",
            f'aws s3 cp template.json "s3://$PREFIX-{home}/{key_prefix}template.json" --region {home}',
            f'TEMPLATE=(--template-url "https://$PREFIX-{home}.s3.{home}.amazonaws.com/{key_prefix}template.json")',
        ]
    else:
        lines.append("TEMPLATE=(--template-body file://template.json)")
    lines += [
        f'aws cloudformation create-stack-set --region {home} --stack-set-name atrest "${{TEMPLATE[@]}}" \\',
        "  --permission-model SERVICE_MANAGED --auto-deployment Enabled=true,RetainStacksOnAccountRemoval=false \\",
        "  --capabilities CAPABILITY_IAM \\",
        f'  --parameters ParameterKey={ARTIFACT_PARAMETER},ParameterValue="$PREFIX" ParameterKey=AlertEmail,ParameterValue="$ALERT_EMAIL"',
        f'aws cloudformation create-stack-instances --region {home} --stack-set-name atrest \\',
        '  --deployment-targets OrganizationalUnitIds="$OU" --regions "${REGIONS[@]}" \\',
        "  --operation-preferences RegionConcurrencyType=PARALLEL,MaxConcurrentPercentage=25,FailureTolerancePercentage=0",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", type=Path, default=Path(__file__).resolve().parent.parent / "template.yaml")
    parser.add_argument("--artifacts", type=Path, required=True, help="directory holding <binary>/bootstrap.zip (make package)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bucket-prefix", required=True, help="ArtifactBucketPrefix: code lives in <prefix>-<region>")
    parser.add_argument("--key-prefix", default="atrest/")
    parser.add_argument("--org-id", required=True, help="AWS Organizations id (o-...) for the bucket policies")
    parser.add_argument("--region", action="append", dest="regions", help="target Region (repeatable); the first is where the StackSet lives")
    args = parser.parse_args(argv)
    regions = args.regions or ["us-east-1"]
    if args.key_prefix and not args.key_prefix.endswith("/"):
        args.key_prefix += "/"

    sam = yaml_parse(args.template.read_text())
    binaries = function_binaries(sam)
    keys = artifact_keys(binaries, args.artifacts, args.key_prefix)
    cfn = translate(sam, binaries, keys)

    out = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "artifacts").mkdir(parents=True)
    for zip_path, key in keys.values():
        shutil.copyfile(zip_path, out / "artifacts" / key[len(args.key_prefix):])
    body = json.dumps(cfn, indent=1, sort_keys=False)
    if len(body.encode()) > TEMPLATE_URL_LIMIT:
        raise SystemExit(f"stackset: the template is {len(body):,} bytes, over the 1 MB TemplateURL limit")
    (out / "template.json").write_text(body)
    for region in regions:
        policy = bucket_policy(f"{args.bucket_prefix}-{region}", args.key_prefix, args.org_id)
        (out / f"bucket-policy-{region}.json").write_text(json.dumps(policy, indent=2))
    rollout = out / "rollout.sh"
    rollout.write_text(rollout_commands(args.bucket_prefix, regions, args.key_prefix, len(body.encode())))
    rollout.chmod(0o755)
    print(f"stackset: {out}/template.json ({len(body.encode()):,} bytes, {len(binaries)} functions, no transform); "
          f"run {rollout} to upload and roll out", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
