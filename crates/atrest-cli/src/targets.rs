//! Where a sweep runs: one or many regions (`--region`, `--all-regions`), in the caller's
//! account or in each account whose role it may assume (`--role-arn`, `--accounts-file`), the
//! way `c7n-org` runs Cloud Custodian across an organisation.

use std::path::Path;

use anyhow::{Context, bail};
use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use serde::Deserialize;

/// One account and region to sweep, with the SDK configuration that reaches it.
#[derive(Clone)]
pub struct Target {
    pub account: String,
    pub region: String,
    pub sdk: SdkConfig,
}

/// What the operator asked for.
#[derive(Default)]
pub struct Scope<'a> {
    pub regions: &'a [String],
    pub all_regions: bool,
    pub role_arns: &'a [String],
    pub accounts_file: Option<&'a Path>,
}

impl Scope<'_> {
    /// Only the configured account and region: the command behaves as before.
    pub fn is_default(&self) -> bool {
        self.regions.is_empty() && !self.all_regions && self.role_arns.is_empty() && self.accounts_file.is_none()
    }
}

/// `{"accounts": [{"role_arn": "...", "name": "..."}]}`, or a plain list of role ARNs.
#[derive(Deserialize)]
#[serde(untagged)]
enum AccountsFile {
    Accounts { accounts: Vec<AccountEntry> },
    RoleArns(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountEntry {
    role_arn: String,
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
}

/// A region name as AWS spells them (`us-east-1`, `ap-southeast-2`, `us-gov-west-1`).
pub fn valid_region(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].chars().all(|c| c.is_ascii_lowercase())
        && parts[1..parts.len() - 1].iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok()
}

/// `arn:<partition>:iam::<12 digits>:role/<path/name>` → the account id.
pub fn role_account(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
                && account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && resource.strip_prefix("role/").is_some_and(|r| !r.is_empty()) =>
        {
            Some(account)
        }
        _ => None,
    }
}

fn role_arns_from_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading accounts file {}", path.display()))?;
    let parsed: AccountsFile = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected {{\"accounts\": [{{\"role_arn\": \"arn:aws:iam::<account>:role/<name>\"}}]}} or a list of role ARNs",
            path.display()
        )
    })?;
    Ok(match parsed {
        AccountsFile::Accounts { accounts } => accounts.into_iter().map(|a| a.role_arn).collect(),
        AccountsFile::RoleArns(arns) => arns,
    })
}

/// Every account and region the scope names, each reachable: roles are assumed and regions
/// checked before anything is swept, so a bad name fails the command with nothing done.
pub async fn resolve(sdk: &SdkConfig, scope: &Scope<'_>) -> anyhow::Result<Vec<Target>> {
    let mut role_arns: Vec<String> = scope.role_arns.to_vec();
    if let Some(path) = scope.accounts_file {
        role_arns.extend(role_arns_from_file(path)?);
    }
    for arn in &role_arns {
        if role_account(arn).is_none() {
            bail!("{arn:?} is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)");
        }
    }
    for region in scope.regions {
        if !valid_region(region) {
            bail!("{region:?} is not an AWS region name (such as eu-west-1)");
        }
    }

    // The accounts: the caller's own, or one per role.
    let mut accounts: Vec<(String, SdkConfig)> = Vec::new();
    let sts = aws_sdk_sts::Client::new(sdk);
    if role_arns.is_empty() {
        let me = sts.get_caller_identity().send().await.context("sts:GetCallerIdentity (which account these credentials are in)")?;
        accounts.push((me.account().unwrap_or("unknown").to_string(), sdk.clone()));
    }
    for arn in &role_arns {
        let assumed = sts
            .assume_role()
            .role_arn(arn)
            .role_session_name("atrest-sweep")
            .send()
            .await
            .map_err(aws_sdk_sts::Error::from)
            .with_context(|| format!("cannot assume {arn}"))?;
        let c = assumed.credentials().with_context(|| format!("sts:AssumeRole of {arn} returned no credentials"))?;
        let expiry = std::time::SystemTime::try_from(*c.expiration()).ok();
        let credentials =
            Credentials::new(c.access_key_id(), c.secret_access_key(), Some(c.session_token().to_string()), expiry, "atrest-assumed-role");
        let account = role_account(arn).unwrap_or_default().to_string();
        accounts.push((account, sdk.to_builder().credentials_provider(SharedCredentialsProvider::new(credentials)).build()));
    }

    let mut targets = Vec::new();
    for (account, account_sdk) in accounts {
        let regions: Vec<String> = if scope.all_regions {
            enabled_regions(&account_sdk).await.with_context(|| format!("the enabled regions of account {account}"))?
        } else if scope.regions.is_empty() {
            vec![account_sdk.region().map(|r| r.to_string()).context("no region configured: set AWS_REGION or pass --region")?]
        } else {
            scope.regions.to_vec()
        };
        for region in regions {
            let sdk = account_sdk.to_builder().region(Region::new(region.clone())).build();
            targets.push(Target { account: account.clone(), region, sdk });
        }
    }
    Ok(targets)
}

/// The regions enabled for the account (opted-in or not requiring it), sorted.
async fn enabled_regions(sdk: &SdkConfig) -> anyhow::Result<Vec<String>> {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let out = ec2.describe_regions().all_regions(false).send().await.map_err(aws_sdk_ec2::Error::from).context("ec2:DescribeRegions")?;
    let mut regions: Vec<String> = out.regions().iter().filter_map(|r| r.region_name()).map(str::to_string).collect();
    regions.sort();
    if regions.is_empty() {
        bail!("ec2:DescribeRegions listed no enabled region");
    }
    Ok(regions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names_as_aws_spells_them() {
        for ok in ["us-east-1", "ap-southeast-2", "us-gov-west-1", "eu-central-2", "ca-west-1"] {
            assert!(valid_region(ok), "{ok}");
        }
        for bad in ["", "us-east", "useast-1", "US-EAST-1", "us-east-x", "us--1", "mars-north-1a"] {
            assert!(!valid_region(bad), "{bad}");
        }
    }

    #[test]
    fn role_arns_name_their_account() {
        assert_eq!(role_account("arn:aws:iam::111122223333:role/atrest-audit"), Some("111122223333"));
        assert_eq!(role_account("arn:aws-us-gov:iam::111122223333:role/path/to/r"), Some("111122223333"));
        for bad in ["arn:aws:iam::1111:role/r", "arn:aws:iam::111122223333:user/u", "arn:aws:sts::111122223333:role/r", "role/r"] {
            assert_eq!(role_account(bad), None, "{bad}");
        }
    }

    #[test]
    fn accounts_files_in_both_shapes_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("atrest-accounts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let listed = write("list.json", r#"["arn:aws:iam::111122223333:role/a"]"#);
        assert_eq!(role_arns_from_file(&listed).unwrap(), ["arn:aws:iam::111122223333:role/a"]);
        let named = write("named.json", r#"{"accounts": [{"role_arn": "arn:aws:iam::111122223333:role/a", "name": "prod"}]}"#);
        assert_eq!(role_arns_from_file(&named).unwrap(), ["arn:aws:iam::111122223333:role/a"]);
        let bad = write("bad.json", r#"{"accounts": [{"role": "x"}]}"#);
        assert!(role_arns_from_file(&bad).unwrap_err().to_string().contains("bad.json"));
    }
}
