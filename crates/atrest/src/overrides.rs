//! Clients a test puts in place of the ones a handler builds from the SDK configuration.
//!
//! Handlers ask their context for each client (`ctx.client(aws_sdk_ec2::Client::new)`): the
//! context answers with the override registered for that client type, else builds one from its
//! `SdkConfig`. Tests register overrides once, on the runner (`RuleRunner::with_client`,
//! `FixRunner::with_client`) or on a context they build themselves, and every context the runner
//! makes carries them; no handler keeps an `Option<Client>` of its own. In Lambda nothing is
//! registered and the lookup scans an empty list.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

use aws_config::SdkConfig;

/// Overrides keyed by client type. A clone shares them (one reference count), so each
/// invocation's context gets them without copying; a handful at most, so a list, not a map.
#[derive(Clone, Default)]
pub struct ClientOverrides {
    clients: Arc<Vec<Override>>,
}

#[derive(Clone)]
struct Override {
    type_id: TypeId,
    type_name: &'static str,
    client: Arc<dyn Any + Send + Sync>,
}

impl ClientOverrides {
    /// These overrides plus `client`, in place of any earlier one of its type.
    pub fn with<C: Clone + Send + Sync + 'static>(mut self, client: C) -> Self {
        let clients = Arc::make_mut(&mut self.clients);
        clients.retain(|o| o.type_id != TypeId::of::<C>());
        clients.push(Override { type_id: TypeId::of::<C>(), type_name: std::any::type_name::<C>(), client: Arc::new(client) });
        self
    }

    /// The override registered for client type `C`, if any.
    pub fn get<C: Clone + 'static>(&self) -> Option<C> {
        self.clients.iter().find(|o| o.type_id == TypeId::of::<C>()).and_then(|o| o.client.downcast_ref::<C>()).cloned()
    }

    /// The override for `C`, else `build(sdk)`.
    pub fn client<C: Clone + 'static>(&self, sdk: &SdkConfig, build: impl FnOnce(&SdkConfig) -> C) -> C {
        self.get().unwrap_or_else(|| build(sdk))
    }
}

impl fmt::Debug for ClientOverrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clients.iter().map(|o| o.type_name)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::Verdict;
    use crate::item::ConfigurationItem;
    use crate::params::Params;
    use crate::remediation::{Fix, FixContext, FixOutcome, FixRequest, FixRunner, FixSpec};
    use crate::rule::{ConfigRule, Discovered, RuleContext, RuleRunner, RuleSpec};
    use aws_config::{BehaviorVersion, Region};
    use aws_sdk_kms::operation::describe_key::DescribeKeyOutput;
    use aws_sdk_kms::types::KeyMetadata;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    fn sdk(region: &'static str) -> SdkConfig {
        SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new(region)).build()
    }

    #[test]
    fn an_override_is_returned_for_its_type_only_and_the_last_one_wins() {
        let standin = |region| aws_sdk_kms::Client::new(&sdk(region));
        let overrides = ClientOverrides::default().with(standin("eu-west-1")).with(standin("eu-west-3"));
        let kms = overrides.client(&sdk("us-east-1"), aws_sdk_kms::Client::new);
        assert_eq!(kms.config().region().map(|r| r.as_ref()), Some("eu-west-3"));
        let config = overrides.client(&sdk("us-east-1"), aws_sdk_config::Client::new);
        assert_eq!(config.config().region().map(|r| r.as_ref()), Some("us-east-1"));
        assert!(format!("{overrides:?}").contains("aws_sdk_kms"), "{overrides:?}");
    }

    #[test]
    fn clones_share_what_was_registered_before_and_not_after() {
        let before = ClientOverrides::default().with(aws_sdk_kms::Client::new(&sdk("eu-west-1")));
        let after = before.clone().with(aws_sdk_config::Client::new(&sdk("eu-west-1")));
        assert!(before.get::<aws_sdk_config::Client>().is_none());
        assert!(after.get::<aws_sdk_kms::Client>().is_some() && after.get::<aws_sdk_config::Client>().is_some());
    }

    const KEY_ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    /// What a handler sees: the key `ctx.kms` resolves `alias/app` to, and the Region of the
    /// SNS client `ctx.client` gives it.
    async fn seen(kms: &crate::kms::KeyResolver, sns: aws_sdk_sns::Client) -> crate::Result<String> {
        Ok(format!("{} {}", kms.requested_key_arn("alias/app").await?, sns.config().region().map(|r| r.as_ref()).unwrap_or("")))
    }

    fn describe_key() -> Rule {
        mock!(aws_sdk_kms::Client::describe_key).match_requests(|r| r.key_id() == Some("alias/app")).then_output(|| {
            DescribeKeyOutput::builder().key_metadata(KeyMetadata::builder().key_id("1234").arn(KEY_ARN).build().unwrap()).build()
        })
    }

    static PROBE_FIX: FixSpec = FixSpec { name: "probe", description: "", resource_types: &[], parameters: &[], disruptive: false };
    struct ProbeFix;

    #[async_trait::async_trait]
    impl Fix for ProbeFix {
        fn spec(&self) -> &'static FixSpec {
            &PROBE_FIX
        }
        async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> crate::Result<FixOutcome> {
            Ok(FixOutcome::succeeded(&PROBE_FIX, req, seen(&ctx.kms, ctx.client(crate::clients::sns)).await?))
        }
    }

    #[tokio::test]
    async fn the_runner_gives_a_fix_the_registered_clients_and_backs_its_key_resolver_with_kms() {
        let describe = describe_key();
        let kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe]);
        let runner = FixRunner::new(Arc::new(ProbeFix), &sdk("us-east-1"), None)
            .with_client(kms)
            .with_client(aws_sdk_sns::Client::new(&sdk("eu-west-3")));
        let req = FixRequest::decode(&PROBE_FIX, &serde_json::json!({"ResourceId": "r"})).unwrap();
        assert_eq!(runner.step_request(&req).await.message, format!("{KEY_ARN} eu-west-3"));
        let ctx = FixContext::new(&sdk("us-east-1")).with_client(mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe]));
        assert_eq!(seen(&ctx.kms, ctx.client(crate::clients::sns)).await.unwrap(), format!("{KEY_ARN} us-east-1"));
        assert_eq!(describe.num_calls(), 2);
    }

    static PROBE_RULE: RuleSpec = RuleSpec {
        name: "probe",
        description: "",
        resource_types: &["AWS::::Account"],
        triggers: &[],
        parameters: &[],
        mirrors: None,
        fix: None,
    };
    struct ProbeRule;

    #[async_trait::async_trait]
    impl ConfigRule for ProbeRule {
        fn spec(&self) -> &'static RuleSpec {
            &PROBE_RULE
        }
        async fn judge(&self, ctx: &RuleContext, _item: &ConfigurationItem) -> crate::Result<Verdict> {
            Ok(Verdict::compliant(seen(&ctx.kms, ctx.client(crate::clients::sns)).await?))
        }
        async fn discover(&self, _ctx: &RuleContext) -> crate::Result<Vec<Discovered>> {
            Ok(vec![Discovered::Item(ConfigurationItem::live("AWS::::Account", "123456789012", serde_json::json!({})))])
        }
        async fn fetch_item(&self, _ctx: &RuleContext, _type: &str, _id: &str) -> crate::Result<Option<ConfigurationItem>> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn the_runner_gives_a_rule_the_registered_clients_and_backs_its_key_resolver_with_kms() {
        let describe = describe_key();
        let runner = RuleRunner::new(Arc::new(ProbeRule), &sdk("us-east-1"))
            .with_client(mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe]))
            .with_client(aws_sdk_sns::Client::new(&sdk("eu-west-3")));
        let report = runner.sweep(Params::default(), aws_smithy_types::DateTime::from_secs(0), None).await.unwrap();
        assert_eq!(report.evaluations[0].annotation.as_deref(), Some(format!("{KEY_ARN} eu-west-3").as_str()));
        assert_eq!(describe.num_calls(), 1);
    }
}
