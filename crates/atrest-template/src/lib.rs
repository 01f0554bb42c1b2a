//! `template.yaml`, generated: `atrest template --write` (or `make template`).
//!
//! The stack is the hand-written shared part (`skeleton/shared.yaml`: topic, keys, automation
//! role, optional recorder) plus one block per rule and per fix, written from the skeletons
//! `skeleton/rule.yaml` and `skeleton/fix.yaml`. What differs between blocks comes from two
//! places beside each crate's code: its spec (`RuleSpec`/`FixSpec`: name, resource types,
//! triggers, parameters) and its `deploy.yaml` (descriptions, IAM policies, which stack
//! parameter feeds which rule or document parameter, the stack parameters and conditions it
//! introduces). A fix's SSM document parameters are written from its `ParamSpec`s (names,
//! defaults, allowed values), so the document and the worker cannot disagree.
//!
//! The skeletons are YAML with `@@name@@` placeholders. A placeholder alone on a line takes a
//! block of lines, indented like the placeholder; elsewhere it takes one line of text. Nothing
//! here parses the YAML it writes: cfn-lint and the template tests check the result, and the
//! committed `template.yaml` is compared with a fresh one by this crate's tests.

mod deploy;
mod render;

use std::path::{Path, PathBuf};

use atrest::remediation::RESUME_KEY;
use atrest::{FixSpec, ParamKind, ParamSpec, RuleSpec, TriggerKind};
use atrest_catalog::{fix_entries, rule_entries};

pub use deploy::Deploy;
use render::{Fill, yaml_str};

/// The command that rewrites `template.yaml`; named by the staleness test.
pub const REGENERATE: &str = "make template   (= cargo run -p atrest-cli -- template --write)";

/// A KMS key reference as `ParamKind::KmsKey` accepts it: key id, key ARN, alias name or alias
/// ARN (multi-Region keys included).
pub const KMS_KEY_PATTERN: &str =
    r"(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/[a-zA-Z0-9/_-]+|alias/[a-zA-Z0-9/_-]+|[a-f0-9-]{36}|mrk-[a-f0-9]{32})";

const SHARED: &str = include_str!("../skeleton/shared.yaml");
const RULE: &str = include_str!("../skeleton/rule.yaml");
const FIX: &str = include_str!("../skeleton/fix.yaml");
const REMEDIATION: &str = include_str!("../skeleton/remediation.yaml");

/// The workspace this crate was built in (where `template.yaml` and `crates/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `template.yaml` as the specs and deploy files under `root` make it.
pub fn generate(root: &Path) -> Result<String, String> {
    let load = |krate: String| Deploy::load(&root.join("crates").join(krate));
    let rules: Vec<(&RuleSpec, Deploy)> =
        rule_entries().map(|r| Ok((r.spec, load(format!("rule-{}", r.spec.name))?))).collect::<Result<_, String>>()?;
    let mut stack = Sections::default();
    // (logical id, condition) of every fix, in the order they are written.
    let mut fixes: Vec<(String, Option<String>)> = Vec::new();
    for (rule, deploy) in &rules {
        let condition = deploy.text(&["Condition"]);
        stack.add(deploy)?;
        stack.resources.push(rule_block(rule, deploy, condition.as_deref())?);
        let l = logical_id(rule.name);
        stack.outputs += &output(
            &format!("{l}RuleName"),
            &format!("AWS Config rule {}: {}", rule.name, rule.description),
            &format!("{l}Rule"),
            condition.as_deref(),
        );
        stack.outputs += &output(
            &format!("{l}FunctionName"),
            &format!("Lambda function that evaluates the rule {}.", rule.name),
            &format!("{l}Function"),
            condition.as_deref(),
        );
        let Some(fix) = rule.fix.and_then(|name| fix_entries().find(|f| f.spec.name == name)).map(|f| f.spec) else { continue };
        let fix_deploy = load(format!("fix-{}", fix.name))?;
        let f = logical_id(fix.name);
        if !fixes.iter().any(|(logical, _)| *logical == f) {
            // A fix serving several rules is deployed whenever one of them is: it takes a
            // condition only when every rule it serves has that same condition.
            let mut serving = rules.iter().filter(|(r, _)| r.fix == Some(fix.name)).map(|(_, d)| d.text(&["Condition"]));
            let first = serving.next().flatten();
            let fix_condition = if serving.all(|c| c == first) { first } else { None };
            stack.add(&fix_deploy)?;
            stack.resources.push(fix_block(fix, &fix_deploy, fix_condition.as_deref())?);
            let title = fix_deploy.required_text(&["Document", "Title"])?;
            stack.outputs += &output(
                &format!("{f}FunctionName"),
                &format!("Remediation worker fix-{}.", fix.name),
                &format!("{f}Function"),
                fix_condition.as_deref(),
            );
            stack.outputs += &output(
                &format!("{f}DocumentName"),
                &format!("SSM Automation document that runs fix-{}: {title}.", fix.name),
                &format!("{f}Document"),
                fix_condition.as_deref(),
            );
            fixes.push((f, fix_condition));
        }
        stack.resources.push(remediation_block(rule, deploy, fix, &fix_deploy, condition.as_deref())?);
    }
    for fix in fix_entries() {
        if !fixes.iter().any(|(logical, _)| *logical == logical_id(fix.spec.name)) {
            return Err(format!("fix {} is no rule's fix: the template has no remediation configuration for it", fix.spec.name));
        }
    }
    let roster = |attribute: &str| -> String {
        fixes
            .iter()
            .map(|(f, condition)| match condition {
                None => format!("- !GetAtt {f}{attribute}.Arn"),
                Some(c) => format!("- !If [{c}, !GetAtt {f}{attribute}.Arn, !Ref AWS::NoValue]"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    Fill::new(SHARED)
        .block("parameter_groups", &stack.parameter_groups)
        .block("parameters", &stack.parameters)
        .block("conditions", &stack.conditions)
        .block("rules", &stack.rules)
        .block("resources", &stack.resources.iter().map(|b| b.trim_end()).collect::<Vec<_>>().join("\n\n"))
        .block("outputs", &stack.outputs)
        .block("fix_roles", &roster("Role"))
        .block("fix_functions", &roster("Function"))
        .finish("skeleton/shared.yaml")
}

fn output(name: &str, description: &str, resource: &str, condition: Option<&str>) -> String {
    let condition = condition.map(|c| format!("  Condition: {c}\n")).unwrap_or_default();
    format!("{name}:\n{condition}  Description: {}\n  Value: !Ref {resource}\n", yaml_str(description))
}

fn condition_line(condition: Option<&str>) -> String {
    condition.map(|c| format!("Condition: {c}")).unwrap_or_default()
}

/// `s3-enable-default-encryption` → `S3EnableDefaultEncryption`: the prefix of every logical
/// id of a rule's or fix's block.
pub fn logical_id(name: &str) -> String {
    name.split('-').map(|w| w[..1].to_ascii_uppercase() + &w[1..]).collect()
}

/// The stack-level sections the deploy files add to, in catalog order.
#[derive(Default)]
struct Sections {
    parameter_groups: String,
    parameters: String,
    conditions: String,
    rules: String,
    resources: Vec<String>,
    outputs: String,
}

impl Sections {
    fn add(&mut self, d: &Deploy) -> Result<(), String> {
        let params = d.keys("Parameters");
        if !params.is_empty() {
            let label = d.text(&["ParameterGroup"]).ok_or_else(|| d.error("has Parameters but no ParameterGroup label"))?;
            self.parameter_groups += &format!("- Label: {{ default: {} }}\n  Parameters: [{}]\n", yaml_str(&label), params.join(", "));
        }
        for (section, into) in [
            ("Parameters", &mut self.parameters),
            ("Conditions", &mut self.conditions),
            ("Rules", &mut self.rules),
            ("Outputs", &mut self.outputs),
        ] {
            if let Some(body) = d.raw(&[section]) {
                *into += &format!("# ---- from {}\n{body}\n", d.origin());
            }
        }
        Ok(())
    }
}

fn rule_block(spec: &RuleSpec, d: &Deploy, condition: Option<&str>) -> Result<String, String> {
    let l = logical_id(spec.name);
    let accepted: Vec<&str> = spec.parameters.iter().map(|p| p.name).collect();
    for key in d.keys_at(&["ConfigRule", "InputParameters"]) {
        if !accepted.contains(&key.as_str()) {
            return Err(d.error(&format!(
                "ConfigRule.InputParameters.{key} is not a parameter of rule {} ({})",
                spec.name,
                accepted.join(", ")
            )));
        }
    }
    let account_level = spec.resource_types == ["AWS::::Account"];
    let periodic_only = !spec.triggers.contains(&TriggerKind::ConfigurationChange);
    let scope = if account_level {
        "# Periodic only and no Scope: the setting is not a recorded resource, so there is no\n\
         # configuration change to react to."
            .to_string()
    } else if periodic_only {
        "# Periodic only and no Scope: what the rule judges (e.g. a bucket's objects) is not in\n\
         # the configuration item, so a change notification has nothing to trigger."
            .to_string()
    } else {
        format!("Scope:\n  ComplianceResourceTypes: [{}]", spec.resource_types.join(", "))
    };
    let mut sources = Vec::new();
    for trigger in spec.triggers {
        match trigger {
            TriggerKind::ConfigurationChange => sources.push(
                "- EventSource: aws.config\n  MessageType: ConfigurationItemChangeNotification\n\
                 - EventSource: aws.config\n  MessageType: OversizedConfigurationItemChangeNotification",
            ),
            TriggerKind::Periodic => sources.push(
                "- EventSource: aws.config\n  MessageType: ScheduledNotification\n  \
                 MaximumExecutionFrequency: !Ref PeriodicEvaluationFrequency",
            ),
        }
    }
    let mut input = d.raw(&["ConfigRule", "InputParameters"]).unwrap_or_default();
    if !input.is_empty() {
        input.push('\n');
    }
    input += "exemptTagKey: !Ref ExemptTagKey";
    Fill::new(RULE)
        .text("L", &l)
        .block("condition", &condition_line(condition))
        .text("name", spec.name)
        .text("types", &spec.resource_types.join(", "))
        .text("function_description", &d.required_text(&["Function", "Description"])?)
        .block("rule_description", &d.required_raw(&["ConfigRule", "Description"])?)
        .block("scope", &scope)
        .block("input_parameters", &input)
        .block("source_details", &sources.join("\n"))
        .block("policies", &d.required_raw(&["Policies"])?)
        .block("resources", &d.raw(&["Resources"]).unwrap_or_default())
        .finish(&d.origin())
}

fn fix_block(spec: &FixSpec, d: &Deploy, condition: Option<&str>) -> Result<String, String> {
    let patterns = d.keys_at(&["Document", "ParameterPatterns"]);
    for key in &patterns {
        if !spec.parameters.iter().any(|p| p.name == key && p.kind == ParamKind::Text) {
            return Err(d.error(&format!("Document.ParameterPatterns.{key} is not a text parameter of fix {}", spec.name)));
        }
    }
    let pattern_of = |p: &ParamSpec| d.text(&["Document", "ParameterPatterns", p.name]);
    let mut parameters = Vec::new();
    let mut payload = Vec::new();
    for p in spec.parameters {
        parameters.push(document_parameter(p, pattern_of(p)));
        payload.push(format!("{}: \"{{{{ {} }}}}\"", p.name, p.name));
    }
    let resumable = match d.text(&["Document", "Resumable"]).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(d.error(&format!("Document.Resumable is true or false, not {other:?}"))),
    };
    let resume = if resumable { Resume::carried() } else { Resume::none() };
    if resumable {
        payload.push(format!("{RESUME_KEY}: \"{{{{ variable:{RESUME_KEY} }}}}\""));
    }
    Fill::new(FIX)
        .text("F", &logical_id(spec.name))
        .block("condition", &condition_line(condition))
        .text("name", spec.name)
        .text("function_description", &d.required_text(&["Function", "Description"])?)
        .text("title", &d.required_text(&["Document", "Title"])?)
        .block("document_description", &d.required_text(&["Document", "Description"])?)
        .text("resource_id_description", &yaml_str(&d.required_text(&["Document", "ResourceId", "description"])?))
        .text("resource_id_pattern", &yaml_str(&d.required_text(&["Document", "ResourceId", "allowedPattern"])?))
        .block("document_parameters", &parameters.join("\n"))
        .block("payload", &payload.join("\n"))
        .block("variables", resume.variables)
        .block("answer_outputs", resume.answer_outputs)
        .text("after_wait", resume.after_wait)
        .block("remember_step", resume.remember_step)
        .block("policies", &d.required_raw(&["Policies"])?)
        .block("resources", &d.raw(&["Resources"]).unwrap_or_default())
        .finish(&d.origin())
}

/// What a resumable document (deploy.yaml `Document.Resumable: true`) adds to the loop: a
/// runbook variable that carries the worker's continuation point from one turn to the next
/// (Answer reads it from the worker's answer, `Remember` stores it with `aws:updateVariable`
/// before the next Invoke passes it on). Its default says "start from the beginning".
struct Resume {
    variables: &'static str,
    answer_outputs: &'static str,
    after_wait: &'static str,
    remember_step: &'static str,
}

impl Resume {
    fn none() -> Resume {
        Resume { variables: "", answer_outputs: "", after_wait: "Invoke", remember_step: "" }
    }
    fn carried() -> Resume {
        Resume {
            variables: "# Where the next turn starts: the worker's continuation point, carried across turns.
variables:
  Resume:
    type: String
    default: start
    description: The continuation point the last turn handed on (start, or after:<point>).",
            answer_outputs: "- Name: Resume
  Selector: $.Payload.Resume
  Type: String",
            after_wait: "Remember",
            remember_step: "- name: Remember
  action: aws:updateVariable
  description: Keep the continuation point the last turn handed on, for the next turn.
  inputs:
    Name: variable:Resume
    Value: \"{{ Answer.Resume }}\"
  nextStep: Invoke",
        }
    }
}

/// The remediation configuration that ties a rule to its fix's document. Its settings come from
/// the rule's deploy.yaml `Remediation` when it has one (a fix serving several rules may be
/// configured differently for each), else from the fix's.
fn remediation_block(
    rule: &RuleSpec,
    rule_deploy: &Deploy,
    spec: &FixSpec,
    fix_deploy: &Deploy,
    condition: Option<&str>,
) -> Result<String, String> {
    let d = if rule_deploy.keys("Remediation").is_empty() { fix_deploy } else { rule_deploy };
    let accepted: Vec<&str> = spec.parameters.iter().map(|p| p.name).collect();
    for key in d.keys_at(&["Remediation", "Parameters"]) {
        if !accepted.contains(&key.as_str()) {
            return Err(d.error(&format!(
                "Remediation.Parameters.{key} is not a parameter of fix {} ({})",
                spec.name,
                accepted.join(", ")
            )));
        }
    }
    let account_level = rule.resource_types == ["AWS::::Account"];
    // One resource type per remediation configuration: the rule's first.
    let resource_type = if account_level { String::new() } else { format!("ResourceType: {}", rule.resource_types[0]) };
    let controls = if account_level {
        String::new()
    } else {
        "ExecutionControls:\n  SsmControls:\n    ConcurrentExecutionRatePercentage: !Ref RemediationConcurrentExecutionRatePercentage\n    \
         ErrorPercentage: !Ref RemediationErrorPercentage"
            .to_string()
    };
    let why = d.text(&["Remediation", "Why"]).map(|w| format!("# {w}")).unwrap_or_default();
    Fill::new(REMEDIATION)
        .text("F", &logical_id(spec.name))
        .text("L", &logical_id(rule.name))
        .block("condition", &condition_line(condition))
        .text("rule", rule.name)
        .text("name", spec.name)
        .block("resource_type", &resource_type)
        .block("automatic_why", &why)
        .text("automatic_condition", &d.required_text(&["Remediation", "Automatic"])?)
        .text("retry_seconds", &d.required_text(&["Remediation", "RetryAttemptSeconds"])?)
        .block("execution_controls", &controls)
        .block("remediation_parameters", &d.raw(&["Remediation", "Parameters"]).unwrap_or_default())
        .finish(&d.origin())
}

/// One SSM document parameter, from the worker's own declaration of it.
fn document_parameter(p: &ParamSpec, pattern: Option<String>) -> String {
    let mut lines = vec![
        format!("{}:", p.name),
        "  type: String".to_string(),
        format!("  description: {}", yaml_str(&format!("(Optional) {}", p.description))),
        format!("  default: {}", yaml_str(p.default)),
    ];
    let optional = |pattern: &str| if p.default.is_empty() { format!("^$|^{pattern}$") } else { format!("^{pattern}$") };
    match p.kind {
        ParamKind::Bool => lines.push("  allowedValues: [\"false\", \"true\"]".into()),
        ParamKind::OneOf(values) => {
            let values: Vec<String> = values.iter().map(|v| yaml_str(v)).collect();
            lines.push(format!("  allowedValues: [{}]", values.join(", ")));
        }
        ParamKind::KmsKey => lines.push(format!("  allowedPattern: {}", yaml_str(&optional(KMS_KEY_PATTERN)))),
        ParamKind::Integer { .. } => lines.push(format!("  allowedPattern: {}", yaml_str(&optional("-?[0-9]+")))),
        ParamKind::Text | ParamKind::List => {}
    }
    if let Some(pattern) = pattern {
        lines.push(format!("  allowedPattern: {}", yaml_str(&pattern)));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_ids_are_the_pascal_case_names() {
        assert_eq!(logical_id("s3-bucket-server-side-encryption-enabled"), "S3BucketServerSideEncryptionEnabled");
        assert_eq!(logical_id("rds-encrypt-instance"), "RdsEncryptInstance");
    }

    fn param(kind: ParamKind, default: &'static str) -> ParamSpec {
        ParamSpec { name: "P", kind, default, description: "What \"P\" is: a test." }
    }

    #[test]
    fn document_parameters_carry_the_spec_defaults_and_allowed_values() {
        let bool_param = document_parameter(&param(ParamKind::Bool, "false"), None);
        assert!(bool_param.contains("default: \"false\"") && bool_param.contains("allowedValues: [\"false\", \"true\"]"), "{bool_param}");
        let one_of = document_parameter(&param(ParamKind::OneOf(&["none", "rename"]), "none"), None);
        assert!(one_of.contains("default: none") && one_of.contains("allowedValues: [none, rename]"), "{one_of}");
        let optional_key = document_parameter(&param(ParamKind::KmsKey, ""), None);
        assert!(optional_key.contains(&format!("allowedPattern: \"^$|^{KMS_KEY_PATTERN}$\"")), "{optional_key}");
        let required_key = document_parameter(&param(ParamKind::KmsKey, "alias/aws/rds"), None);
        assert!(required_key.contains(&format!("allowedPattern: \"^{KMS_KEY_PATTERN}$\"")), "{required_key}");
        let text = document_parameter(&param(ParamKind::Text, ""), Some("^$|^[a-z]+$".into()));
        assert!(text.contains("allowedPattern: \"^$|^[a-z]+$\""), "{text}");
        let parsed: serde_yaml::Value = serde_yaml::from_str(&bool_param).unwrap();
        assert_eq!(parsed["P"]["description"].as_str(), Some("(Optional) What \"P\" is: a test."));
    }

    #[test]
    fn a_deploy_file_that_names_a_parameter_the_spec_lacks_is_refused() {
        let deploy = Deploy::parse(
            "crates/fix-x/deploy.yaml".into(),
            "Remediation:\n  Automatic: X\n  RetryAttemptSeconds: Y\n  Parameters:\n    Nope:\n      StaticValue:\n        Values: [a]\n"
                .into(),
        )
        .unwrap();
        let rule = atrest_catalog::rule_entries().next().unwrap().spec;
        let fix = atrest_catalog::fix_entries().next().unwrap().spec;
        let err = remediation_block(rule, &deploy, fix, &deploy, None).unwrap_err();
        assert!(err.contains("Remediation.Parameters.Nope is not a parameter"), "{err}");
    }

    #[test]
    fn outputs_of_a_conditional_block_carry_its_condition() {
        let out = output("XRuleName", "AWS Config rule x: a: b", "XRule", Some("DeployX"));
        let parsed: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(parsed["XRuleName"]["Condition"].as_str(), Some("DeployX"));
        assert_eq!(parsed["XRuleName"]["Description"].as_str(), Some("AWS Config rule x: a: b"));
        assert!(!output("Y", "y", "Y", None).contains("Condition"));
    }

    #[test]
    fn unknown_deploy_sections_are_refused() {
        let err = Deploy::parse("crates/x/deploy.yaml".into(), "Polices: []\n".into()).err().unwrap();
        assert!(err.contains("unknown section Polices"), "{err}");
    }
}
