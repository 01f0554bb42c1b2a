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
    use aws_config::{BehaviorVersion, Region};

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
}
