"""S3 default encryption as AWS applies it since January 2023, for moto 5.2.5 (applied by atrest_moto.py).

What AWS documents (S3 User Guide, "Setting default server-side encryption behavior for Amazon S3
buckets", https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-encryption.html, and the
DeleteBucketEncryption API reference,
https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteBucketEncryption.html):

* "All Amazon S3 buckets have encryption configured by default": every bucket, new or existing, has
  SSE-S3 (AES256) as its base level of default encryption, so GetBucketEncryption on a bucket that
  nobody configured answers `AES256` with `BucketKeyEnabled` false.
* DeleteBucketEncryption "resets the default encryption for the bucket as server-side encryption
  with Amazon S3 managed keys (SSE-S3)": the configuration is never absent again.

What moto 5.2.5 does: a new bucket has no configuration (GetBucketEncryption answers
ServerSideEncryptionConfigurationNotFoundError), and DeleteBucketEncryption removes it, which is
the pre-2023 behaviour. A stand-in like that lets a rule or fix look right on a bucket state that
no longer exists in any account. This module gives every bucket moto creates the SSE-S3 base
configuration and makes DeleteBucketEncryption restore it.

Not modelled: objects written without encryption headers are still stored without an encryption
attribute (AWS encrypts them with the bucket's default); atrest does not read object encryption yet.
"""

from moto.s3.models import S3Backend

def _base_configuration():
    # moto's own shape for a stored configuration (what its _encryption_config_from_body produces).
    return {"Rule": {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": "false"}}


def patch():
    create_bucket = S3Backend.create_bucket

    def create_bucket_with_base_encryption(self, bucket_name, region_name, *args, **kwargs):
        bucket = create_bucket(self, bucket_name, region_name, *args, **kwargs)
        if bucket.encryption is None:
            bucket.encryption = _base_configuration()
        return bucket

    def delete_bucket_encryption(self, bucket_name):
        self.get_bucket(bucket_name).encryption = _base_configuration()

    S3Backend.create_bucket = create_bucket_with_base_encryption
    S3Backend.delete_bucket_encryption = delete_bucket_encryption
