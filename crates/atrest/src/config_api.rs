//! The AWS Config calls every rule makes: fetching oversized items, posting evaluations,
//! finding stale evaluations.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_config::types::{ComplianceType, ResourceType};

use crate::error::{Error, ErrorClass, Result, aws_error};
use crate::evaluation::Evaluation;
use crate::item::ConfigurationItem;

/// `PutEvaluations` accepts at most this many evaluations per call.
pub const MAX_EVALUATIONS_PER_CALL: usize = 100;
/// How often evaluations that Config reports in `FailedEvaluations` are sent again.
const FAILED_EVALUATION_RESENDS: u32 = 3;

/// Where evaluations go.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// `PutEvaluations` with the invocation's result token.
    Put { result_token: String },
    /// `PutEvaluations` with `TestMode=true`: validated by Config, stored nowhere.
    TestMode,
    /// Computed and returned only (the CLI's `evaluate` without `--put`, `scan`).
    None,
}

/// Sends evaluations in chunks of 100, re-sending any that Config reports as failed.
/// Throttling is retried by the SDK's retry policy (see `clients::MAX_ATTEMPTS`).
pub async fn put_evaluations(client: &aws_sdk_config::Client, delivery: &Delivery, evaluations: &[Evaluation]) -> Result<()> {
    let (token, test_mode) = match delivery {
        Delivery::None => return Ok(()),
        Delivery::Put { result_token } => (result_token.as_str(), false),
        // Config requires a non-null token even in test mode; RDK uses this literal.
        Delivery::TestMode => ("TESTMODE", true),
    };
    for chunk in evaluations.chunks(MAX_EVALUATIONS_PER_CALL) {
        let mut pending: Vec<aws_sdk_config::types::Evaluation> = chunk.iter().map(Evaluation::to_sdk).collect::<Result<_>>()?;
        let mut attempt = 0;
        while !pending.is_empty() {
            let out = client
                .put_evaluations()
                .result_token(token)
                .test_mode(test_mode)
                .set_evaluations(Some(pending.clone()))
                .send()
                .await
                .map_err(|e| aws_error("config:PutEvaluations", format!("{} evaluations", pending.len()), e))?;
            let failed = out.failed_evaluations().to_vec();
            if failed.is_empty() {
                break;
            }
            attempt += 1;
            if attempt > FAILED_EVALUATION_RESENDS {
                let ids: Vec<&str> = failed.iter().map(|e| e.compliance_resource_id()).collect();
                return Err(Error::Aws {
                    action: "config:PutEvaluations",
                    resource: ids.join(", "),
                    code: "FailedEvaluations".into(),
                    message: format!("Config kept rejecting {} evaluations after {FAILED_EVALUATION_RESENDS} resends", failed.len()),
                    class: ErrorClass::Transient,
                });
            }
            tracing::warn!(failed = failed.len(), attempt, "Config reported failed evaluations; sending them again");
            tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            pending = failed;
        }
    }
    Ok(())
}

/// Fetches the current item of an oversized change with `GetResourceConfigHistory`.
/// `None` when Config has no history for it (not recorded, or a type it does not track).
pub async fn fetch_item(client: &aws_sdk_config::Client, resource_type: &str, resource_id: &str) -> Result<Option<ConfigurationItem>> {
    let out = client
        .get_resource_config_history()
        .resource_type(ResourceType::from(resource_type))
        .resource_id(resource_id)
        .limit(1)
        .send()
        .await;
    let out = match out {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|se| se.is_resource_not_discovered_exception()) => return Ok(None),
        Err(e) => return Err(aws_error("config:GetResourceConfigHistory", format!("{resource_type} {resource_id}"), e)),
    };
    out.configuration_items().first().map(ConfigurationItem::from_history).transpose()
}

/// Resources that Config still holds a COMPLIANT/NON_COMPLIANT result for under this rule but
/// that the latest sweep did not see: they no longer exist (or left the scope), and their old
/// result would otherwise linger forever.
pub async fn stale_resources(
    client: &aws_sdk_config::Client,
    rule_name: &str,
    resource_types: &[&str],
    seen: &HashSet<(String, String)>,
) -> Result<Vec<(String, String)>> {
    let mut stale = Vec::new();
    let mut pages = client
        .get_compliance_details_by_config_rule()
        .config_rule_name(rule_name)
        .compliance_types(ComplianceType::Compliant)
        .compliance_types(ComplianceType::NonCompliant)
        .limit(100)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                let err = aws_error("config:GetComplianceDetailsByConfigRule", rule_name, e);
                // A rule Config does not know has no earlier results to clean up.
                if err.aws_code() == Some("NoSuchConfigRuleException") {
                    return Ok(Vec::new());
                }
                return Err(err);
            }
        };
        for result in page.evaluation_results() {
            let Some(qualifier) = result.evaluation_result_identifier().and_then(|i| i.evaluation_result_qualifier()) else {
                continue;
            };
            let (Some(kind), Some(id)) = (qualifier.resource_type(), qualifier.resource_id()) else { continue };
            if !resource_types.contains(&kind) {
                continue;
            }
            let key = (kind.to_string(), id.to_string());
            if !seen.contains(&key) {
                stale.push(key);
            }
        }
    }
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::Verdict;
    use aws_sdk_config::operation::put_evaluations::{PutEvaluationsError, PutEvaluationsOutput};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_types::DateTime;
    use aws_smithy_types::error::ErrorMetadata;

    fn evaluations(n: usize) -> Vec<Evaluation> {
        (0..n).map(|i| Evaluation::new("AWS::S3::Bucket", &format!("b{i}"), Verdict::compliant("ok"), DateTime::from_secs(1))).collect()
    }

    #[tokio::test]
    async fn failed_evaluations_are_sent_again_until_accepted() {
        let put = mock!(aws_sdk_config::Client::put_evaluations)
            .sequence()
            .output(|| {
                // Config accepted the call but reports one evaluation as failed.
                let failed = Evaluation::new("AWS::S3::Bucket", "b1", Verdict::compliant("ok"), DateTime::from_secs(1)).to_sdk().unwrap();
                PutEvaluationsOutput::builder().failed_evaluations(failed).build()
            })
            .output(|| PutEvaluationsOutput::builder().build())
            .build();
        let client = mock_client!(aws_sdk_config, RuleMode::Sequential, [&put]);
        put_evaluations(&client, &Delivery::Put { result_token: "t".into() }, &evaluations(3)).await.unwrap();
        assert_eq!(put.num_calls(), 2);
    }

    #[tokio::test]
    async fn evaluations_that_keep_failing_are_reported() {
        let put = mock!(aws_sdk_config::Client::put_evaluations).then_output(|| {
            let failed = Evaluation::new("AWS::S3::Bucket", "b0", Verdict::compliant("ok"), DateTime::from_secs(1)).to_sdk().unwrap();
            PutEvaluationsOutput::builder().failed_evaluations(failed).build()
        });
        let client = mock_client!(aws_sdk_config, RuleMode::MatchAny, [&put]);
        let err = put_evaluations(&client, &Delivery::Put { result_token: "t".into() }, &evaluations(1)).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transient);
        assert!(err.to_string().contains("b0"), "{err}");
        assert_eq!(put.num_calls(), 1 + FAILED_EVALUATION_RESENDS as usize);
    }

    #[tokio::test]
    async fn chunks_of_at_most_one_hundred_and_nothing_for_no_evaluations() {
        let put = mock!(aws_sdk_config::Client::put_evaluations)
            .match_requests(|r| r.evaluations().len() <= MAX_EVALUATIONS_PER_CALL && !r.test_mode().unwrap_or(false))
            .then_output(|| PutEvaluationsOutput::builder().build());
        let client = mock_client!(aws_sdk_config, RuleMode::MatchAny, [&put]);
        put_evaluations(&client, &Delivery::Put { result_token: "t".into() }, &evaluations(250)).await.unwrap();
        assert_eq!(put.num_calls(), 3);
        put_evaluations(&client, &Delivery::Put { result_token: "t".into() }, &[]).await.unwrap();
        assert_eq!(put.num_calls(), 3);
    }

    #[tokio::test]
    async fn throttling_is_retried_by_the_sdk_retry_policy() {
        let put = mock!(aws_sdk_config::Client::put_evaluations)
            .sequence()
            .error(|| PutEvaluationsError::generic(ErrorMetadata::builder().code("ThrottlingException").message("Rate exceeded").build()))
            .times(3)
            .output(|| PutEvaluationsOutput::builder().build())
            .build();
        // The same retry policy the Lambdas load (clients::load_sdk_config).
        let client = mock_client!(aws_sdk_config, RuleMode::Sequential, [&put], |c| c
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(crate::clients::MAX_ATTEMPTS)));
        put_evaluations(&client, &Delivery::Put { result_token: "t".into() }, &evaluations(1)).await.unwrap();
        assert_eq!(put.num_calls(), 4);
    }

    #[tokio::test]
    async fn access_denied_names_the_permission() {
        let put = mock!(aws_sdk_config::Client::put_evaluations).then_error(|| {
            PutEvaluationsError::generic(ErrorMetadata::builder().code("AccessDeniedException").message("not authorized").build())
        });
        let client = mock_client!(aws_sdk_config, RuleMode::MatchAny, [&put]);
        let err = put_evaluations(&client, &Delivery::Put { result_token: "t".into() }, &evaluations(1)).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Customer);
        assert!(err.to_string().contains("config:PutEvaluations"), "{err}");
    }
}
