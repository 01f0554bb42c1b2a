"""EBS encryption-by-default account settings for moto 5.2.5, applied by atrest_moto.py at start-up.

What AWS documents (EC2 API reference), per account and Region:

* EnableEbsEncryptionByDefault / DisableEbsEncryptionByDefault -> `ebsEncryptionByDefault`, the new
  value; GetEbsEncryptionByDefault -> `ebsEncryptionByDefault` (false until enabled).
* GetEbsDefaultKmsKeyId -> `kmsKeyId`: `alias/aws/ebs` (the AWS managed key) until
  ModifyEbsDefaultKmsKeyId sets another key, and again after ResetEbsDefaultKmsKeyId.
* ModifyEbsDefaultKmsKeyId `KmsKeyId` (required: key id, key ARN, alias name or alias ARN) ->
  `kmsKeyId`, the ARN of that key.
* ResetEbsDefaultKmsKeyId -> `kmsKeyId`, the ARN of the AWS managed key (`...:alias/aws/ebs`).
* The two settings are independent: enabling or disabling keeps the default key; resetting the key
  keeps encryption by default as it is.
* `DryRun=true` -> `DryRunOperation`, nothing changed.

What moto 5.2.5 does: Enable/Disable/GetEbsEncryptionByDefault already keep the flag on the
account/Region EC2 backend, as AWS does (kept). ModifyEbsDefaultKmsKeyId stores the key ARN on the
same backend (kept) but takes a missing KmsKeyId as "the AWS managed key" and answers an unknown
key with a KMS JSON error that EC2 clients cannot parse. GetEbsDefaultKmsKeyId and
ResetEbsDefaultKmsKeyId are not implemented (HTML 500). This module adds the last two and corrects
Modify: a missing KmsKeyId is `MissingParameter`, an unknown key `InvalidParameterValue` in EC2's
XML error format. (AWS checks the key asynchronously, so there the call appears to succeed and the
setting fails later; the stand-in refuses at once, which no atrest code depends on.)

Not modelled: the settings do not change what CreateVolume / RunInstances make (moto creates
unencrypted volumes unless asked), and the settings are state only.

State: `default_kms_key_id` on moto's per-account/per-Region EC2 backend (the attribute moto's own
CreateVolume and ModifyEbsDefaultKmsKeyId use; "" means the AWS managed key), so
`POST /moto-api/reset` clears it, and each Region of each account has its own.

CreateVolume `ClientToken` (EC2 API reference, "Ensuring idempotency in Amazon EC2 API requests"):
a retry with the same client token and the same parameters returns the result of the original
request and creates nothing; the same token with any other parameter changed answers
`IdempotentParameterMismatch`. Tokens are per account and Region (the same call in another Region
makes another volume). moto 5.2.5 ignores the token and creates a second volume on every retry, so
a lost CreateVolume response left two volumes (found by the fault sweeps, RELIABILITY.md bug 7).
This module remembers, per account/Region backend (`atrest_volume_client_tokens`, cleared by a
reset), each token with the request's parameters (every query parameter but `ClientToken`) and the
volume it made. Of the other EC2 creates atrest calls, none takes a client token in the EC2 API
(CreateSnapshot, CopySnapshot, CreateTags: no `ClientToken` member), so nothing else is changed.
Once the token's volume is gone (deleted by anyone, or by EC2 itself after a KMS key EBS cannot
use), the same token answers `IdempotentParameterMismatch` ("associated with a resource that is
already deleted"), as AWS does (seen by every tool that met the KMS case, e.g.
kubernetes-sigs/aws-ebs-csi-driver#3010). Not modelled: how long AWS keeps a token; a DryRun never
records a token.
"""

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError, MissingParameterError
from moto.ec2.responses import EC2Response

AWS_MANAGED_ALIAS = "alias/aws/ebs"


def _kms(response):
    from moto.kms import kms_backends

    return kms_backends[response.current_account][response.region]


def get_ebs_default_kms_key_id(self):
    self.error_on_dryrun()
    return ActionResult({"KmsKeyId": self.ec2_backend.default_kms_key_id or AWS_MANAGED_ALIAS})


def modify_ebs_default_kms_key_id(self):
    self.error_on_dryrun()
    key = self._get_param("KmsKeyId")
    if not key:
        raise MissingParameterError("KmsKeyId")
    try:
        arn = _kms(self).describe_key(key).arn
    except Exception:  # moto's KMS NotFoundException is a JSON error; EC2 speaks XML
        raise EC2ClientError("InvalidParameterValue", f"The KMS key {key} was not found.") from None
    self.ec2_backend.default_kms_key_id = arn
    return ActionResult({"KmsKeyId": arn})


def reset_ebs_default_kms_key_id(self):
    self.error_on_dryrun()
    self.ec2_backend.default_kms_key_id = ""
    return ActionResult({"KmsKeyId": f"arn:aws:kms:{self.region}:{self.current_account}:{AWS_MANAGED_ALIAS}"})


_moto_create_volume = EC2Response.create_volume


def create_volume(self):
    token = self._get_param("ClientToken")
    if not token:
        return _moto_create_volume(self)
    params = {k: v for k, v in self.querystring.items() if k not in ("ClientToken", "Action", "Version")}
    tokens = self.ec2_backend.__dict__.setdefault("atrest_volume_client_tokens", {})
    if token in tokens:
        known_params, volume = tokens[token]
        self.error_on_dryrun()
        if known_params != params:
            raise EC2ClientError(
                "IdempotentParameterMismatch",
                f"The client token {token} was already used with different parameters.",
            )
        if _volume_id(volume) not in self.ec2_backend.volumes:
            # What AWS answers once the token's volume is gone (e.g. deleted by EC2 after a KMS
            # key EBS cannot use): the token is spent.
            raise EC2ClientError(
                "IdempotentParameterMismatch",
                "The client token you have provided is associated with a resource that is already deleted. "
                "Please use a different client token.",
            )
        return ActionResult(volume)
    result = _moto_create_volume(self)  # raises on DryRun and bad input: no token recorded
    tokens[token] = (params, result.result)
    return result


def _volume_id(result):
    return result["VolumeId"] if isinstance(result, dict) else result.id


def patch():
    EC2Response.create_volume = create_volume
    EC2Response.get_ebs_default_kms_key_id = get_ebs_default_kms_key_id
    EC2Response.modify_ebs_default_kms_key_id = modify_ebs_default_kms_key_id
    EC2Response.reset_ebs_default_kms_key_id = reset_ebs_default_kms_key_id
