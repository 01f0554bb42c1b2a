//! One object copied onto itself with the target encryption, carrying every property a copy
//! does not keep by itself (see the crate docs).

use std::time::Instant;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

use atrest::error::{Result, aws_error};
use atrest_s3::objects::SkipReason;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective, ServerSideEncryption, StorageClass, TaggingDirective};

use crate::{Bucket, ObjectResult, Requests, S3EncryptExistingObjects, Target};

/// `x-amz-copy-source`: `bucket/key` with the key URL-encoded (S3 API Reference, CopyObject),
/// `/` kept. A `+` must be encoded too: S3 would read it as a space.
pub fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + key.len() + 8);
    out.push_str(bucket);
    out.push('/');
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// An object's ACL as the `x-amz-grant-*` headers a copy takes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Grants {
    pub full_control: Vec<String>,
    pub read: Vec<String>,
    pub read_acp: Vec<String>,
    pub write_acp: Vec<String>,
}

impl Grants {
    fn header(list: &[String]) -> Option<String> {
        (!list.is_empty()).then(|| list.join(", "))
    }
}

fn grants_of(acl: &aws_sdk_s3::operation::get_object_acl::GetObjectAclOutput) -> Grants {
    let mut grants = Grants::default();
    for grant in acl.grants() {
        let Some(grantee) = grant.grantee() else { continue };
        let who = if let Some(id) = grantee.id() {
            format!("id=\"{id}\"")
        } else if let Some(uri) = grantee.uri() {
            format!("uri=\"{uri}\"")
        } else if let Some(email) = grantee.email_address() {
            format!("emailAddress=\"{email}\"")
        } else {
            continue;
        };
        let list = match grant.permission().map(|p| p.as_str()) {
            Some("FULL_CONTROL") => &mut grants.full_control,
            Some("READ") => &mut grants.read,
            Some("READ_ACP") => &mut grants.read_acp,
            Some("WRITE_ACP") => &mut grants.write_acp,
            // WRITE has no meaning on an object.
            _ => continue,
        };
        list.push(who);
    }
    grants
}

pub(crate) struct Copy<'a> {
    pub worker: &'a S3EncryptExistingObjects,
    pub s3: &'a aws_sdk_s3::Client,
    pub bucket: &'a Bucket<'a>,
    pub target: &'a Target,
    pub key: &'a str,
    pub head: &'a HeadObjectOutput,
    pub started: Instant,
    pub requests: &'a Requests,
}

fn is_precondition_failed<E>(e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool {
    e.raw_response().is_some_and(|r| r.status().as_u16() == 412)
}

fn is_not_found<E>(e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool {
    e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
}

impl Copy<'_> {
    fn resource(&self) -> String {
        format!("s3://{}/{}", self.bucket.name, self.key)
    }

    fn sse(&self) -> ServerSideEncryption {
        ServerSideEncryption::from(self.target.algorithm.as_str())
    }

    fn kms(&self) -> bool {
        self.target.algorithm == "aws:kms"
    }

    /// STANDARD is what a copy gets when none is named.
    fn storage_class(&self) -> Option<StorageClass> {
        self.head.storage_class().filter(|c| c.as_str() != "STANDARD").cloned()
    }

    pub async fn run(&self) -> Result<ObjectResult> {
        let grants = if self.bucket.acls_enabled {
            self.requests.add(1);
            let acl = match self.s3.get_object_acl().bucket(self.bucket.name).key(self.key).send().await {
                Ok(acl) => acl,
                Err(e) if is_not_found(&e) => return Ok(ObjectResult::Gone),
                Err(e) => return Err(aws_error("s3:GetObjectAcl", self.resource(), e)),
            };
            let owner = acl.owner().and_then(|o| o.id());
            if let (Some(owner), Some(bucket_owner)) = (owner, self.bucket.owner_id.as_deref())
                && owner != bucket_owner
            {
                return Ok(ObjectResult::Skipped(SkipReason::OtherOwner));
            }
            grants_of(&acl)
        } else {
            Grants::default()
        };
        let size = self.head.content_length().unwrap_or(0);
        if size > self.worker.multipart_threshold { self.multipart(size, &grants).await } else { self.single(&grants).await }
    }

    async fn single(&self, grants: &Grants) -> Result<ObjectResult> {
        self.requests.add(1);
        let sent = self
            .s3
            .copy_object()
            .bucket(self.bucket.name)
            .key(self.key)
            .copy_source(copy_source(self.bucket.name, self.key))
            .set_copy_source_if_match(self.head.e_tag().map(str::to_string))
            .metadata_directive(MetadataDirective::Copy)
            .tagging_directive(TaggingDirective::Copy)
            .set_website_redirect_location(self.head.website_redirect_location().map(str::to_string))
            .set_storage_class(self.storage_class())
            .server_side_encryption(self.sse())
            .set_ssekms_key_id(self.target.key_arn.clone())
            .set_bucket_key_enabled(self.kms().then_some(true))
            .set_grant_full_control(Grants::header(&grants.full_control))
            .set_grant_read(Grants::header(&grants.read))
            .set_grant_read_acp(Grants::header(&grants.read_acp))
            .set_grant_write_acp(Grants::header(&grants.write_acp))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(ObjectResult::Copied { multipart: false }),
            Err(e) if is_precondition_failed(&e) => Ok(ObjectResult::Changed),
            Err(e) if is_not_found(&e) => Ok(ObjectResult::Gone),
            Err(e) => Err(aws_error("s3:PutObject", self.resource(), e)),
        }
    }

    /// Over CopyObject's 5 GiB: CreateMultipartUpload with every property (a multipart upload
    /// copies none by itself), UploadPartCopy per range under the ETag seen, Complete; any
    /// failure aborts the upload so no parts are left billed.
    async fn multipart(&self, size: i64, grants: &Grants) -> Result<ObjectResult> {
        let tagging = if self.head.tag_count().unwrap_or(0) > 0 {
            self.requests.add(1);
            let tags = self
                .s3
                .get_object_tagging()
                .bucket(self.bucket.name)
                .key(self.key)
                .send()
                .await
                .map_err(|e| aws_error("s3:GetObjectTagging", self.resource(), e))?;
            let pairs: Vec<String> =
                tags.tag_set().iter().map(|t| format!("{}={}", form_encode(t.key()), form_encode(t.value()))).collect();
            Some(pairs.join("&"))
        } else {
            None
        };
        self.requests.add(1);
        let created = self
            .s3
            .create_multipart_upload()
            .bucket(self.bucket.name)
            .key(self.key)
            .set_metadata(self.head.metadata().cloned())
            .set_content_type(self.head.content_type().map(str::to_string))
            .set_content_encoding(self.head.content_encoding().map(str::to_string))
            .set_content_language(self.head.content_language().map(str::to_string))
            .set_content_disposition(self.head.content_disposition().map(str::to_string))
            .set_cache_control(self.head.cache_control().map(str::to_string))
            .set_expires(self.head.expires_string().and_then(|t| DateTime::from_str(t, Format::HttpDate).ok()))
            .set_website_redirect_location(self.head.website_redirect_location().map(str::to_string))
            .set_storage_class(self.storage_class())
            .set_tagging(tagging)
            .server_side_encryption(self.sse())
            .set_ssekms_key_id(self.target.key_arn.clone())
            .set_bucket_key_enabled(self.kms().then_some(true))
            .set_grant_full_control(Grants::header(&grants.full_control))
            .set_grant_read(Grants::header(&grants.read))
            .set_grant_read_acp(Grants::header(&grants.read_acp))
            .set_grant_write_acp(Grants::header(&grants.write_acp))
            .send()
            .await
            .map_err(|e| aws_error("s3:PutObject", self.resource(), e))?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(atrest::Error::Internal(format!("CreateMultipartUpload for {} answered no UploadId", self.resource())));
        };
        let result = self.parts(size, &upload_id).await;
        match result {
            Ok(Some(parts)) => {
                self.requests.add(1);
                let done = self
                    .s3
                    .complete_multipart_upload()
                    .bucket(self.bucket.name)
                    .key(self.key)
                    .upload_id(&upload_id)
                    .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                    .send()
                    .await;
                match done {
                    Ok(_) => Ok(ObjectResult::Copied { multipart: true }),
                    Err(e) => {
                        let err = aws_error("s3:PutObject", self.resource(), e);
                        self.abort(&upload_id).await;
                        Err(err)
                    }
                }
            }
            Ok(None) => {
                self.abort(&upload_id).await;
                Ok(ObjectResult::NotReached)
            }
            Err(outcome) => {
                self.abort(&upload_id).await;
                outcome
            }
        }
    }

    /// The parts, in order; `Ok(None)` when the turn's hard stop came first.
    async fn parts(&self, size: i64, upload_id: &str) -> std::result::Result<Option<Vec<CompletedPart>>, Result<ObjectResult>> {
        // At most 10 000 parts (S3 multipart limits).
        let part_size = self.worker.part_size.max((size + 9_999) / 10_000).max(1);
        let mut parts = Vec::new();
        let mut offset = 0i64;
        let mut number = 1i32;
        while offset < size {
            if self.started.elapsed() >= self.worker.hard_stop {
                return Ok(None);
            }
            let end = (offset + part_size).min(size) - 1;
            self.requests.add(1);
            let copied = self
                .s3
                .upload_part_copy()
                .bucket(self.bucket.name)
                .key(self.key)
                .upload_id(upload_id)
                .part_number(number)
                .copy_source(copy_source(self.bucket.name, self.key))
                .copy_source_range(format!("bytes={offset}-{end}"))
                .set_copy_source_if_match(self.head.e_tag().map(str::to_string))
                .send()
                .await;
            let out = match copied {
                Ok(out) => out,
                Err(e) if is_precondition_failed(&e) => return Err(Ok(ObjectResult::Changed)),
                Err(e) if is_not_found(&e) => return Err(Ok(ObjectResult::Gone)),
                Err(e) => return Err(Err(aws_error("s3:PutObject", self.resource(), e))),
            };
            let etag = out.copy_part_result().and_then(|r| r.e_tag()).map(str::to_string);
            parts.push(CompletedPart::builder().part_number(number).set_e_tag(etag).build());
            offset = end + 1;
            number += 1;
        }
        Ok(Some(parts))
    }

    async fn abort(&self, upload_id: &str) {
        self.requests.add(1);
        if let Err(e) = self.s3.abort_multipart_upload().bucket(self.bucket.name).key(self.key).upload_id(upload_id).send().await {
            // A lifecycle rule (AbortIncompleteMultipartUpload) is the backstop; say what is left.
            let err = aws_error("s3:AbortMultipartUpload", self.resource(), e);
            tracing::warn!(error = %err, upload_id, "could not abort the multipart copy; its parts stay billed until aborted");
        }
    }
}

/// URL query encoding for the `x-amz-tagging` header (`key1=value1&key2=value2`).
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::types::{Grant, Grantee, Permission, Type};

    #[test]
    fn copy_source_encodes_what_s3_would_misread() {
        assert_eq!(copy_source("b", "a/b c+d.txt"), "b/a/b%20c%2Bd.txt");
        assert_eq!(copy_source("b", "été"), "b/%C3%A9t%C3%A9");
        assert_eq!(copy_source("b", "k?x=1&y#z"), "b/k%3Fx%3D1%26y%23z");
    }

    #[test]
    fn tags_are_form_encoded() {
        assert_eq!(form_encode("a b&c=d"), "a%20b%26c%3Dd");
    }

    #[test]
    fn acl_becomes_grant_headers() {
        let grant = |grantee: Grantee, permission: Permission| Grant::builder().grantee(grantee).permission(permission).build();
        let owner = Grantee::builder().r#type(Type::CanonicalUser).id("abc").build().unwrap();
        let all_users = Grantee::builder().r#type(Type::Group).uri("http://acs.amazonaws.com/groups/global/AllUsers").build().unwrap();
        let acl = aws_sdk_s3::operation::get_object_acl::GetObjectAclOutput::builder()
            .grants(grant(owner.clone(), Permission::FullControl))
            .grants(grant(all_users, Permission::Read))
            .grants(grant(owner, Permission::Write))
            .build();
        let grants = grants_of(&acl);
        assert_eq!(grants.full_control, vec!["id=\"abc\"".to_string()]);
        assert_eq!(grants.read, vec!["uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"".to_string()]);
        assert!(grants.read_acp.is_empty() && grants.write_acp.is_empty());
    }
}
