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

moto applies the bucket's default encryption to objects written without encryption headers, as AWS
does. Objects stored before 2023 without encryption still exist in real buckets;
`make_legacy_object` (the /atrest-ext/s3-legacy-object endpoint) turns an object into one: no
encryption attribute, LastModified in December 2022. It is a seeding device for tests, not a
behaviour.

CopyObject, as the S3 API Reference documents it
(https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html) and moto 5.2.5 does not:

* `x-amz-copy-source-if-match`: "Copies the object if its entity tag (ETag) matches the specified
  tag"; otherwise 412 Precondition Failed. moto ignores the header and copies.
* `x-amz-website-redirect-location` "is unique to each object and is not copied when using the
  x-amz-metadata-directive header. To copy the value, you must specify x-amz-website-redirect-location
  in the request header." moto keeps the source's value on a copy without the header.

GetBucketVersioning answers `<VersioningConfiguration>` (API_GetBucketVersioning.html, Response
Syntax); moto 5.2.5 answers `<GetBucketVersioningResponse>`, which the AWS SDK for Rust refuses to
parse.

UploadPartCopy takes the same `x-amz-copy-source-if-match` (API_UploadPartCopy.html); moto ignores it
there too.
"""

import datetime

from moto.s3.exceptions import PreconditionFailed
from moto.s3.models import S3Backend, s3_backends
from moto.s3.responses import S3Response

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

    copy_object_response = S3Response.copy_object

    def copy_object_with_conditions(self):
        _check_copy_source_if_match(self)
        return copy_object_response(self)

    S3Response.copy_object = copy_object_with_conditions

    copy_part_response = S3Response._key_response_put

    def key_put_with_part_copy_conditions(self, *args, **kwargs):
        if "x-amz-copy-source" in self.headers and "uploadId" in self.querystring:
            _check_copy_source_if_match(self)
        return copy_part_response(self, *args, **kwargs)

    S3Response._key_response_put = key_put_with_part_copy_conditions

    def get_bucket_versioning(self):
        status = self.backend.get_bucket_versioning(self.bucket_name)
        inner = f"<Status>{status}</Status>" if status else ""
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                f'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{inner}</VersioningConfiguration>')
        return 200, {"Content-Type": "application/xml"}, body

    S3Response.get_bucket_versioning = get_bucket_versioning

    backend_copy_object = S3Backend.copy_object

    def copy_object_without_redirect(self, src_key, dest_bucket_name, dest_key_name, *args, **kwargs):
        backend_copy_object(self, src_key, dest_bucket_name, dest_key_name, *args, **kwargs)
        if not kwargs.get("website_redirect_location"):
            copied = self.get_object(dest_bucket_name, dest_key_name)
            copied.website_redirect_location = None
            # moto also keeps the header among the metadata it copies.
            for name in [k for k in copied.metadata if k.lower() == "x-amz-website-redirect-location"]:
                del copied.metadata[name]

    S3Backend.copy_object = copy_object_without_redirect


def _check_copy_source_if_match(response):
    wanted = response.headers.get("x-amz-copy-source-if-match")
    if wanted is None:
        return
    from urllib.parse import parse_qs, unquote, urlparse

    source = urlparse(response.headers.get("x-amz-copy-source", ""))
    bucket, key = unquote(source.path).lstrip("/").split("/", 1)
    version = parse_qs(source.query).get("versionId", [None])[0]
    found = response.backend.get_object(bucket, key, version_id=version)
    if found is not None and wanted.strip('"') != found.etag.strip('"'):
        raise PreconditionFailed(failed_condition="x-amz-copy-source-If-Match")


LEGACY_LAST_MODIFIED = datetime.datetime(2022, 12, 1, 12, 0, 0)


def make_legacy_object(bucket_name, key_name=None, prefix=None):
    """The current version of the object (or of every object under `prefix`) as S3 kept objects
    written before 2023 without encryption headers into a bucket without default encryption.
    Returns how many objects changed."""
    for account in list(s3_backends.values()):
        for backend in list(account.values()):
            bucket = backend.buckets.get(bucket_name)
            if bucket is None:
                continue
            if prefix is not None:
                names = [k for k in list(bucket.keys.keys()) if k.startswith(prefix)]
            else:
                names = [key_name] if bucket.keys.get(key_name) is not None else []
            for name in names:
                key = bucket.keys.get(name)
                key.encryption = None
                key.kms_key_id = None
                key.bucket_key_enabled = None
                key.last_modified = LEGACY_LAST_MODIFIED
            return len(names)
    return 0
