"""DynamoDB server-side encryption changes for moto 5.2.5, applied by atrest_moto.py at start-up.

What AWS documents (DynamoDB API reference, UpdateTable and SSESpecification,
https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateTable.html,
https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_SSESpecification.html, and
API_SSEDescription.html):

* UpdateTable takes `SSESpecification` ("The new server-side encryption settings for the specified
  table") with `Enabled`, `SSEType` and `KMSMasterKeyId`.
* `Enabled` true: server-side encryption type KMS; with no `KMSMasterKeyId`, the AWS managed key
  `alias/aws/dynamodb`. `Enabled` false (or absent): the AWS owned key, for which DescribeTable
  reports no `SSEDescription`.
* `KMSMasterKeyId` may be a key id, key ARN, alias name or alias ARN; `SSEDescription.KMSMasterKeyArn`
  is always the key's ARN.
* `SSEDescription.Status` is ENABLED (or UPDATING while DynamoDB applies a change), `SSEType` KMS.

What moto 5.2.5 does: UpdateTable answers 200 and ignores `SSESpecification` entirely, so a table
never leaves the AWS owned key. This module applies it to the table moto's CreateTable and
DescribeTable already use (`Table.sse_specification`), with the key resolved to its ARN through
moto's KMS (an unknown key is a `ValidationException`, as AWS answers a KMS validation error).
Everything else UpdateTable does is left to moto.

Not modelled: the UPDATING interval (the change is ENABLED at once, as moto makes every state
final at once; atrest's tests cover UPDATING with aws-smithy-mocks), the key policy and grants
DynamoDB needs on a customer managed key, and CreateTable's `KMSMasterKeyArn`, which moto still
reports as given.

State: moto's own table object, so `POST /moto-api/reset` clears it.
"""

from moto.dynamodb.exceptions import MockValidationException
from moto.dynamodb.responses import DynamoHandler

AWS_MANAGED_ALIAS = "alias/aws/dynamodb"

_moto_update_table = DynamoHandler.update_table


def _key_arn(handler, table, key):
    from moto.kms import kms_backends

    if not key:
        # moto's own helper: creates aws/dynamodb on first use, as AWS does, and returns its ARN.
        return table._get_default_encryption_key(handler.current_account, handler.region)
    try:
        return kms_backends[handler.current_account][handler.region].describe_key(key).arn
    except Exception:  # moto's KMS NotFoundException; DynamoDB answers in its own error shape
        raise MockValidationException(
            f"KMS validation error: key {key} was not found in this account and Region."
        ) from None


def update_table(self):
    spec = self.body.get("SSESpecification")
    if spec is not None:
        table = self.dynamodb_backend.get_table(self.body["TableName"])  # ResourceNotFoundException first
        if spec.get("Enabled") is True:
            if spec.get("SSEType", "KMS") != "KMS":
                raise MockValidationException(f"Unsupported SSEType {spec.get('SSEType')}: the only supported value is KMS.")
            arn = _key_arn(self, table, spec.get("KMSMasterKeyId"))
            table.sse_specification = {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": arn}
        else:
            table.sse_specification = None
    return _moto_update_table(self)


def patch():
    DynamoHandler.update_table = update_table
