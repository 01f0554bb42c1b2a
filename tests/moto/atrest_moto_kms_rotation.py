"""KMS automatic key rotation for moto 5.2.5, applied by atrest_moto.py at start-up.

What AWS documents (KMS API reference, EnableKeyRotation and GetKeyRotationStatus,
https://docs.aws.amazon.com/kms/latest/APIReference/API_EnableKeyRotation.html,
https://docs.aws.amazon.com/kms/latest/APIReference/API_GetKeyRotationStatus.html, and the
developer guide's "Rotate AWS KMS keys"):

* EnableKeyRotation takes `RotationPeriodInDays`, 90 to 2560; "If no value is specified, the
  default value is 365 days." A value out of range is a `ValidationException`.
* GetKeyRotationStatus answers `KeyId` (the key ARN), `KeyRotationEnabled` and, while rotation is
  on, `RotationPeriodInDays` and `NextRotationDate`.
* Automatic rotation is supported only on symmetric encryption keys with key material KMS
  generated (`Origin` AWS_KMS): asymmetric, HMAC, imported-material and custom key store keys
  answer `UnsupportedOperationException`.
* A key that is not Enabled (disabled, pending deletion, ...) answers `KMSInvalidStateException`
  to EnableKeyRotation.

What moto 5.2.5 does: EnableKeyRotation flips a flag on any key in any state and ignores
`RotationPeriodInDays`; GetKeyRotationStatus answers only `KeyRotationEnabled`. This module keeps
the period (and when rotation was turned on) on moto's key object, answers the documented
fields, and refuses what AWS refuses. DisableKeyRotation forgets the period.

Not modelled: rotations themselves (no new key material is ever made), on-demand rotation, the
`KeyManager` of AWS managed keys (moto says CUSTOMER; atrest tests that path with
aws-smithy-mocks), multi-Region replicas.

State: attributes of moto's key object, so `POST /moto-api/reset` clears it.
"""

import json
import time

from moto.core.exceptions import JsonRESTError
from moto.kms.responses import KmsResponse

DEFAULT_DAYS = 365
MIN_DAYS, MAX_DAYS = 90, 2560

_moto_enable = KmsResponse.enable_key_rotation
_moto_disable = KmsResponse.disable_key_rotation


def _key(response):
    key_id = response._get_param("KeyId")
    response._validate_cmk_id(key_id)  # NotFoundException as moto answers it
    backend = response.kms_backend
    return backend.keys[backend.get_key_id(key_id)]


def enable_key_rotation(self):
    days = self._get_param("RotationPeriodInDays")
    if days is not None and not (MIN_DAYS <= int(days) <= MAX_DAYS):
        raise JsonRESTError(
            "ValidationException",
            f"1 validation error detected: Value '{days}' at 'rotationPeriodInDays' failed to satisfy constraint: "
            f"Member must have value between {MIN_DAYS} and {MAX_DAYS}",
        )
    key = _key(self)
    if key.key_spec != "SYMMETRIC_DEFAULT" or key.origin != "AWS_KMS":
        raise JsonRESTError(
            "UnsupportedOperationException",
            f"{key.arn} origin is {key.origin} and spec is {key.key_spec}, which is not valid for this operation.",
        )
    if key.key_state != "Enabled":
        raise JsonRESTError("KMSInvalidStateException", f"{key.arn} is {key.key_state}.")
    result = _moto_enable(self)
    key.atrest_rotation_period_days = int(days) if days is not None else DEFAULT_DAYS
    key.atrest_rotation_enabled_at = time.time()
    return result


def disable_key_rotation(self):
    result = _moto_disable(self)
    key = _key(self)
    key.atrest_rotation_period_days = None
    return result


def get_key_rotation_status(self):
    key = _key(self)
    answer = {"KeyId": key.arn, "KeyRotationEnabled": bool(key.key_rotation_status)}
    if key.key_rotation_status:
        days = getattr(key, "atrest_rotation_period_days", None) or DEFAULT_DAYS
        since = getattr(key, "atrest_rotation_enabled_at", None) or time.time()
        answer["RotationPeriodInDays"] = days
        answer["NextRotationDate"] = since + days * 86400
    return json.dumps(answer)


def patch():
    KmsResponse.enable_key_rotation = enable_key_rotation
    KmsResponse.disable_key_rotation = disable_key_rotation
    KmsResponse.get_key_rotation_status = get_key_rotation_status
