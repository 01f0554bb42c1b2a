"""Firehose corrections for moto 5.2.5, applied by atrest_moto.py at start-up.

What AWS documents (Amazon Data Firehose API reference):

* StartDeliveryStreamEncryption: "You can only enable SSE for a Firehose stream that uses DirectPut
  as its source" (https://docs.aws.amazon.com/firehose/latest/APIReference/API_StartDeliveryStreamEncryption.html).
  A stream fed by a Kinesis data stream or by MSK keeps its data in that source. The refusal is
  answered as the operation's error for an input that is not valid, `InvalidArgumentException`.
* The S3 destination a stream describes always carries `CompressionFormat` (default
  UNCOMPRESSED), `BufferingHints` (defaults 5 MiB and 300 s) and `EncryptionConfiguration`
  (default `NoEncryptionConfig: NoEncryption`): API_S3DestinationDescription.html and
  API_ExtendedS3DestinationDescription.html list them as required, API_S3DestinationConfiguration.html,
  API_BufferingHints.html and API_EncryptionConfiguration.html give the defaults.

What moto 5.2.5 does: StartDeliveryStreamEncryption encrypts any stream, whatever its source; and
a destination is described exactly as it was created, so a stream created without those three
fields has a description the SDKs refuse to read ("compression_format was not specified but it is
required"). This module refuses the encryption of a stream whose type is not DirectPut and fills
the three defaults into the S3 and extended S3 destination configurations before moto stores them.

Not modelled: the ENABLING interval and ENABLING_FAILED (moto makes the change ENABLED at once;
atrest's tests cover them with aws-smithy-mocks), the 25-changes-a-day limit, and the key checks
(InvalidKMSResourceException).

State: moto's own delivery stream objects, so `POST /moto-api/reset` clears it.
"""

import copy

from moto.firehose.exceptions import InvalidArgumentException
from moto.firehose.models import FirehoseBackend

S3_DEFAULTS = {
    "CompressionFormat": "UNCOMPRESSED",
    "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300},
    "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"},
}

_moto_create = FirehoseBackend.create_delivery_stream
_moto_start_encryption = FirehoseBackend.start_delivery_stream_encryption


def _with_s3_defaults(config):
    if not config:
        return config
    filled = copy.deepcopy(config)
    for field, default in S3_DEFAULTS.items():
        filled.setdefault(field, copy.deepcopy(default))
    return filled


def create_delivery_stream(self, region, delivery_stream_name, delivery_stream_type, kinesis_stream_source_configuration,
                           delivery_stream_encryption_configuration_input, s3_destination_configuration,
                           extended_s3_destination_configuration, *other_destinations_and_tags):
    return _moto_create(self, region, delivery_stream_name, delivery_stream_type, kinesis_stream_source_configuration,
                        delivery_stream_encryption_configuration_input, _with_s3_defaults(s3_destination_configuration),
                        _with_s3_defaults(extended_s3_destination_configuration), *other_destinations_and_tags)


def start_delivery_stream_encryption(self, stream_name, encryption_config):
    stream = self.delivery_streams.get(stream_name)
    if stream is not None and stream.delivery_stream_type != "DirectPut":
        raise InvalidArgumentException(
            f"Firehose stream {stream_name} has source {stream.delivery_stream_type}: "
            "server-side encryption can only be enabled for a Firehose stream that uses DirectPut as its source."
        )
    return _moto_start_encryption(self, stream_name, encryption_config)


def patch():
    FirehoseBackend.create_delivery_stream = create_delivery_stream
    FirehoseBackend.start_delivery_stream_encryption = start_delivery_stream_encryption
