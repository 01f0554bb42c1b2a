//! Alerts people read: SNS messages and their publisher. What a message says is decided by its
//! sender (`remediation::email` for fix outcomes); this module knows nothing of fixes.
//!
//! Emails are plain text. SNS subjects must be ASCII, without line breaks, and under 100
//! characters; bodies say what changed, what was kept and what to do next.

use aws_config::SdkConfig;

use crate::error::{Result, aws_error};

pub const MAX_SUBJECT_CHARS: usize = 99;
/// The environment variable that names the alert topic in the Lambdas.
pub const TOPIC_ENV: &str = "ATREST_ALERT_TOPIC_ARN";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub subject: String,
    pub body: String,
}

/// Makes a string safe for an SNS subject: printable ASCII, one line, under the limit.
pub fn subject_line(text: &str) -> String {
    let mut clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else if c.is_whitespace() {
                ' '
            } else {
                '?'
            }
        })
        .collect();
    clean = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    if clean.chars().count() > MAX_SUBJECT_CHARS {
        clean = clean.chars().take(MAX_SUBJECT_CHARS - 3).collect::<String>() + "...";
    }
    clean
}

pub struct AlertPublisher {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl AlertPublisher {
    pub fn new(sdk: &SdkConfig, topic_arn: impl Into<String>) -> Self {
        AlertPublisher { client: crate::clients::sns(sdk), topic_arn: topic_arn.into() }
    }

    /// The publisher configured by `ATREST_ALERT_TOPIC_ARN`, if set.
    pub fn from_env(sdk: &SdkConfig) -> Option<Self> {
        std::env::var(TOPIC_ENV).ok().filter(|t| !t.trim().is_empty()).map(|t| Self::new(sdk, t.trim()))
    }

    pub async fn publish(&self, alert: &Alert) -> Result<()> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&alert.subject)
            .message(&alert.body)
            .send()
            .await
            .map_err(|e| aws_error("sns:Publish", &self.topic_arn, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_ascii_single_line_and_short() {
        let s = subject_line(&format!("[atrest] fixed: S3 bucket {}\nnext line é", "x".repeat(200)));
        assert!(s.len() <= MAX_SUBJECT_CHARS);
        assert!(s.is_ascii());
        assert!(!s.contains('\n'));
        assert!(s.ends_with("..."));
    }
}
