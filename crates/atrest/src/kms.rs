//! KMS key references and matching, shared by every rule with a key-list parameter and every
//! fix with a `KmsKeyId`.
//!
//! Resources report their key as a key ARN (sometimes a bare id or an alias); operators write
//! key ARNs, key ids, alias names or alias ARNs. Two key ARNs are compared directly; anything
//! else is resolved to a key ARN with `DescribeKey`, once per reference per invocation.

use std::collections::HashMap;

use aws_sdk_kms::types::KeyMetadata;
use tokio::sync::Mutex;

use crate::error::{Error, Result, aws_error};

/// The parameter through which every fix is told which key to encrypt with.
pub const KMS_KEY_PARAM: &str = "KmsKeyId";

/// "No such key" is the operator's mistake in `KmsKeyId`, not a failed call.
fn not_found_as_parameter_error(reference: &str, err: Error) -> Error {
    match err {
        Error::Aws { code, message, .. } if code == "NotFoundException" => {
            Error::invalid_parameter(KMS_KEY_PARAM, format!("{reference} was not found: {message}"))
        }
        other => other,
    }
}

/// The four ways to name a KMS key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    KeyArn(String),
    AliasArn(String),
    AliasName(String),
    KeyId(String),
}

impl KeyRef {
    pub fn parse(text: &str) -> Result<KeyRef, String> {
        let text = text.trim();
        let invalid = || format!("{text:?} is not a KMS key id, key ARN, alias name or alias ARN");
        if text.is_empty() || text.len() > 2048 {
            return Err(invalid());
        }
        if !text.chars().all(|c| c.is_ascii_alphanumeric() || "-_/:.".contains(c)) {
            return Err(invalid());
        }
        if let Some(rest) = text.strip_prefix("arn:") {
            // arn:<partition>:kms:<region>:<account>:key/<id> | alias/<name>
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            if parts.len() != 5 || parts[1] != "kms" || parts[2].is_empty() || parts[3].len() != 12 {
                return Err(invalid());
            }
            return match parts[4].split_once('/') {
                Some(("key", id)) if !id.is_empty() => Ok(KeyRef::KeyArn(text.to_string())),
                Some(("alias", name)) if !name.is_empty() => Ok(KeyRef::AliasArn(text.to_string())),
                _ => Err(invalid()),
            };
        }
        if let Some(name) = text.strip_prefix("alias/") {
            return if name.is_empty() { Err(invalid()) } else { Ok(KeyRef::AliasName(text.to_string())) };
        }
        if text.contains(['/', ':']) {
            return Err(invalid());
        }
        Ok(KeyRef::KeyId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            KeyRef::KeyArn(s) | KeyRef::AliasArn(s) | KeyRef::AliasName(s) | KeyRef::KeyId(s) => s,
        }
    }
}

/// Resolves key references to key ARNs, caching each answer for the life of the resolver
/// (one invocation: a rotated alias is seen by the next one).
pub struct KeyResolver {
    client: aws_sdk_kms::Client,
    cache: Mutex<HashMap<String, String>>,
}

impl KeyResolver {
    pub fn new(client: aws_sdk_kms::Client) -> Self {
        KeyResolver { client, cache: Mutex::new(HashMap::new()) }
    }

    /// The key ARN behind a reference; a key ARN is returned as it is, without a call.
    pub async fn key_arn(&self, reference: &str) -> Result<String> {
        let parsed = KeyRef::parse(reference).map_err(|reason| Error::invalid_parameter("KMS key", reason))?;
        if let KeyRef::KeyArn(arn) = parsed {
            return Ok(arn);
        }
        if let Some(hit) = self.cache.lock().await.get(reference) {
            return Ok(hit.clone());
        }
        let out = self.client.describe_key().key_id(reference).send().await.map_err(|e| aws_error("kms:DescribeKey", reference, e))?;
        let arn = out
            .key_metadata()
            .and_then(|m| m.arn())
            .ok_or_else(|| Error::Internal(format!("DescribeKey {reference} returned no key ARN")))?
            .to_string();
        self.cache.lock().await.insert(reference.to_string(), arn.clone());
        Ok(arn)
    }

    /// The key ARN a fix's `KmsKeyId` parameter asks for (`reference`: its value, or the fix's
    /// default key when it was left empty). Like [`KeyResolver::key_arn`], a key ARN is taken as
    /// it is; a reference that names no key is an error in the parameter, named after it.
    pub async fn requested_key_arn(&self, reference: &str) -> Result<String> {
        KeyRef::parse(reference).map_err(|reason| Error::invalid_parameter(KMS_KEY_PARAM, reason))?;
        self.key_arn(reference).await.map_err(|e| not_found_as_parameter_error(reference, e))
    }

    /// The metadata of the key a fix's `KmsKeyId` parameter asks for, always read with
    /// `DescribeKey` (a key ARN too): for fixes that check the key's state and kind before they
    /// use it. Errors as [`KeyResolver::requested_key_arn`]; the metadata always has the ARN.
    pub async fn requested_key_metadata(&self, reference: &str) -> Result<KeyMetadata> {
        KeyRef::parse(reference).map_err(|reason| Error::invalid_parameter(KMS_KEY_PARAM, reason))?;
        let out = self
            .client
            .describe_key()
            .key_id(reference)
            .send()
            .await
            .map_err(|e| not_found_as_parameter_error(reference, aws_error("kms:DescribeKey", reference, e)))?;
        let meta = out.key_metadata.ok_or_else(|| Error::Internal(format!("DescribeKey {reference} returned no key metadata")))?;
        if meta.arn().is_none() {
            return Err(Error::Internal(format!("DescribeKey {reference} returned no key ARN")));
        }
        Ok(meta)
    }

    /// Whether `actual` (the key a resource uses) is one of `allowed`.
    pub async fn is_one_of(&self, actual: &str, allowed: &[String]) -> Result<bool> {
        // Cheap path first: identical text, or two key ARNs, need no call.
        if allowed.iter().any(|a| a == actual) {
            return Ok(true);
        }
        let actual_arn = self.key_arn(actual).await?;
        for candidate in allowed {
            if self.key_arn(candidate).await? == actual_arn {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kms::operation::describe_key::DescribeKeyOutput;
    use aws_sdk_kms::types::KeyMetadata;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    const KEY_ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const OTHER_ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn parses_every_reference_form() {
        assert!(matches!(KeyRef::parse(KEY_ARN), Ok(KeyRef::KeyArn(_))));
        assert!(matches!(KeyRef::parse("arn:aws:kms:us-east-1:123456789012:alias/app"), Ok(KeyRef::AliasArn(_))));
        assert!(matches!(KeyRef::parse("alias/aws/s3"), Ok(KeyRef::AliasName(_))));
        assert!(matches!(KeyRef::parse("1234abcd-12ab-34cd-56ef-1234567890ab"), Ok(KeyRef::KeyId(_))));
        assert!(matches!(KeyRef::parse("mrk-1234abcd12ab34cd56ef1234567890ab"), Ok(KeyRef::KeyId(_))));
    }

    #[test]
    fn rejects_what_is_not_a_key() {
        for bad in [
            "",
            "alias/",
            "arn:aws:s3:::bucket",
            "arn:aws:kms:us-east-1:123:key/x",
            "key id with spaces",
            "a/b",
            "arn:aws:kms:us-east-1:123456789012:secret/x",
        ] {
            assert!(KeyRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn two_key_arns_compare_without_a_call() {
        // A client with no mocked answers: any call would fail the test.
        let describe = mock!(aws_sdk_kms::Client::describe_key).then_error(|| panic!("DescribeKey must not be called"));
        let client = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe]);
        let resolver = KeyResolver::new(client);
        assert!(resolver.is_one_of(KEY_ARN, &[OTHER_ARN.into(), KEY_ARN.into()]).await.unwrap());
        assert!(!resolver.is_one_of(KEY_ARN, &[OTHER_ARN.into()]).await.unwrap());
        assert_eq!(describe.num_calls(), 0);
    }

    #[tokio::test]
    async fn aliases_are_resolved_once_per_invocation() {
        let describe = mock!(aws_sdk_kms::Client::describe_key).match_requests(|r| r.key_id() == Some("alias/app")).then_output(|| {
            DescribeKeyOutput::builder().key_metadata(KeyMetadata::builder().key_id("1234").arn(KEY_ARN).build().unwrap()).build()
        });
        let client = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe]);
        let resolver = KeyResolver::new(client);
        assert!(resolver.is_one_of(KEY_ARN, &["alias/app".into()]).await.unwrap());
        assert!(resolver.is_one_of(KEY_ARN, &["alias/app".into()]).await.unwrap());
        assert_eq!(describe.num_calls(), 1);
    }

    fn not_found() -> aws_sdk_kms::operation::describe_key::DescribeKeyError {
        aws_sdk_kms::operation::describe_key::DescribeKeyError::NotFoundException(
            aws_sdk_kms::types::error::NotFoundException::builder()
                .message("Alias arn:aws:kms:us-east-1:123456789012:alias/gone is not found.")
                .meta(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("NotFoundException")
                        .message("Alias arn:aws:kms:us-east-1:123456789012:alias/gone is not found.")
                        .build(),
                )
                .build(),
        )
    }

    fn key_metadata() -> DescribeKeyOutput {
        DescribeKeyOutput::builder().key_metadata(KeyMetadata::builder().key_id("1234").arn(KEY_ARN).build().unwrap()).build()
    }

    #[tokio::test]
    async fn a_requested_key_that_does_not_exist_is_a_kms_key_id_error() {
        let describe = mock!(aws_sdk_kms::Client::describe_key).then_error(not_found);
        let client = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe]);
        let resolver = KeyResolver::new(client);
        for result in
            [resolver.requested_key_arn("alias/gone").await.map(|_| ()), resolver.requested_key_metadata("alias/gone").await.map(|_| ())]
        {
            match result {
                Err(Error::InvalidParameter { name, reason }) => {
                    assert_eq!(name, "KmsKeyId");
                    assert!(reason.starts_with("alias/gone was not found: Alias"), "{reason}");
                }
                other => panic!("expected a KmsKeyId parameter error, got {other:?}"),
            }
        }
        match resolver.requested_key_arn("not a key").await {
            Err(Error::InvalidParameter { name, .. }) => assert_eq!(name, "KmsKeyId"),
            other => panic!("expected a KmsKeyId parameter error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_requested_key_resolves_to_its_arn_and_metadata() {
        let describe =
            mock!(aws_sdk_kms::Client::describe_key).match_requests(|r| r.key_id() == Some("alias/app")).then_output(key_metadata);
        let by_arn = mock!(aws_sdk_kms::Client::describe_key).match_requests(|r| r.key_id() == Some(KEY_ARN)).then_output(key_metadata);
        let client = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe, &by_arn]);
        let resolver = KeyResolver::new(client);
        assert_eq!(resolver.requested_key_arn("alias/app").await.unwrap(), KEY_ARN);
        // A key ARN needs no call to be an ARN; the metadata is always read (state, usage, spec).
        assert_eq!(resolver.requested_key_arn(KEY_ARN).await.unwrap(), KEY_ARN);
        assert_eq!(by_arn.num_calls(), 0);
        assert_eq!(resolver.requested_key_metadata(KEY_ARN).await.unwrap().arn(), Some(KEY_ARN));
        assert_eq!(by_arn.num_calls(), 1);
        assert_eq!(describe.num_calls(), 1);
    }
}
