//! Remediation configurations, as Config passes their parameters, and the document parameters
//! SSM settles from them.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};
use serde_yaml::Value as Yaml;

use crate::Error;
use crate::document::Document;
use crate::template::{Template, as_str, tag_name};

/// How Config fills one document parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum RemediationParam {
    /// `ResourceValue: {Value: RESOURCE_ID}`.
    ResourceId,
    /// `StaticValue: {Values: [...]}`, resolved for the stack defaults.
    Static(Vec<String>),
}

/// One `AWS::Config::RemediationConfiguration`, resolved for the stack defaults.
#[derive(Debug, Clone)]
pub struct Remediation {
    pub logical_id: String,
    /// Logical id of the Config rule (`ConfigRuleName: !Ref <Rule>`).
    pub rule_logical_id: String,
    pub resource_type: Option<String>,
    /// Logical id of the SSM document (`TargetId: !Ref <Document>`).
    pub document_logical_id: String,
    pub target_version: Option<String>,
    pub automatic: bool,
    /// Parameters left out by `!Ref AWS::NoValue` are absent.
    pub parameters: BTreeMap<String, RemediationParam>,
}

impl Template {
    /// Every `AWS::Config::RemediationConfiguration`, in template order.
    pub fn remediations(&self) -> Result<Vec<Remediation>, Error> {
        self.remediation_configurations().map_err(Error::Template)
    }

    fn remediation_configurations(&self) -> Result<Vec<Remediation>, String> {
        let mut out = Vec::new();
        for (id, r) in self.resources().filter(|(_, r)| as_str(&r["Type"]) == Some("AWS::Config::RemediationConfiguration")) {
            let props = &r["Properties"];
            let ref_target = |key: &str| -> Result<String, String> {
                match &props[key] {
                    Yaml::Tagged(t) if tag_name(t) == "Ref" => as_str(&t.value).map(str::to_string).ok_or_else(|| format!("{id}.{key}")),
                    other => Err(format!("{id}.{key} is not a !Ref: {other:?}")),
                }
            };
            if as_str(&props["TargetType"]) != Some("SSM_DOCUMENT") {
                return Err(format!("{id}: TargetType is not SSM_DOCUMENT"));
            }
            let mut parameters = BTreeMap::new();
            let params = self.resolve(&props["Parameters"]).map_err(|e| format!("{id}.Parameters: {e}"))?;
            for (name, v) in params.as_object().ok_or_else(|| format!("{id}.Parameters is not a map"))? {
                let p = if v.pointer("/ResourceValue/Value") == Some(&json!("RESOURCE_ID")) {
                    RemediationParam::ResourceId
                } else if let Some(values) = v.pointer("/StaticValue/Values").and_then(Json::as_array) {
                    RemediationParam::Static(
                        values
                            .iter()
                            .map(|x| x.as_str().map(str::to_string).ok_or_else(|| format!("{id}.{name}: static value {x} is not a string")))
                            .collect::<Result<_, _>>()?,
                    )
                } else {
                    return Err(format!("{id}.Parameters.{name}: unsupported {v}"));
                };
                parameters.insert(name.clone(), p);
            }
            let automatic = match self.resolve(&props["Automatic"])? {
                Json::Bool(b) => b,
                Json::String(s) => s == "true",
                other => return Err(format!("{id}.Automatic: {other}")),
            };
            out.push(Remediation {
                logical_id: id.to_string(),
                rule_logical_id: ref_target("ConfigRuleName")?,
                resource_type: as_str(&props["ResourceType"]).map(str::to_string),
                document_logical_id: ref_target("TargetId")?,
                target_version: as_str(&props["TargetVersion"]).map(str::to_string),
                automatic,
                parameters,
            });
        }
        Ok(out)
    }

    /// The remediation whose document invokes the worker `binary` (e.g. `fix-s3-enable-default-encryption`),
    /// with that document.
    /// The remediation configuration of the rule with this logical id, and its document.
    pub fn remediation_for_rule(&self, rule_logical_id: &str) -> Result<(Remediation, Document), Error> {
        let remediation = self
            .remediations()?
            .into_iter()
            .find(|r| r.rule_logical_id == rule_logical_id)
            .ok_or_else(|| Error::Template(format!("no remediation configuration for the rule {rule_logical_id}")))?;
        let document = self.document(&remediation.document_logical_id)?;
        Ok((remediation, document))
    }

    /// The one remediation configuration whose document runs this worker (a fix that serves
    /// several rules is ambiguous: ask by rule).
    pub fn remediation_for_worker(&self, binary: &str) -> Result<(Remediation, Document), Error> {
        let mut found = Vec::new();
        for r in self.remediations()? {
            let doc = self.document(&r.document_logical_id)?;
            if doc.invoked_workers().iter().any(|w| w == binary) {
                found.push((r, doc));
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(Error::UnknownRemediation { worker: binary.to_string() }),
            _ => Err(Error::AmbiguousRemediation {
                worker: binary.to_string(),
                remediations: found.into_iter().map(|(r, _)| r.logical_id).collect(),
            }),
        }
    }
}

impl Remediation {
    /// The automation parameters Config passes for one resource (what StartRemediationExecution
    /// builds): RESOURCE_ID becomes the resource id, a static value its values.
    pub fn execution_parameters(&self, resource_id: &str) -> BTreeMap<String, Vec<String>> {
        self.parameters
            .iter()
            .map(|(k, v)| {
                let values = match v {
                    RemediationParam::ResourceId => vec![resource_id.to_string()],
                    RemediationParam::Static(values) => values.clone(),
                };
                (k.clone(), values)
            })
            .collect()
    }
}

impl Document {
    /// The document's parameters for a run, as SSM settles them: given values (first of each
    /// list), defaults for the rest; unknown and missing required parameters, values outside
    /// `allowedValues` and values not matching `allowedPattern` are refused.
    pub fn parameters_for(&self, given: &BTreeMap<String, Vec<String>>) -> Result<BTreeMap<String, String>, Error> {
        let declared =
            self.content["parameters"].as_object().ok_or_else(|| Error::NotModelled("the document declares no parameters".into()))?;
        if let Some(unknown) = given.keys().find(|k| !declared.contains_key(*k)) {
            return Err(Error::ParameterRefused(format!("Parameter \"{unknown}\" is not defined in the document.")));
        }
        let mut out = BTreeMap::new();
        for (name, decl) in declared {
            if decl["type"].as_str() != Some("String") {
                return Err(Error::NotModelled(format!("parameter {name}: only String parameters are supported")));
            }
            let value = match given.get(name) {
                Some(values) if values.len() == 1 => values[0].clone(),
                Some(values) => return Err(Error::ParameterRefused(format!("parameter {name}: a String takes one value, got {values:?}"))),
                None => match decl.get("default") {
                    Some(Json::String(s)) => s.clone(),
                    Some(other) => return Err(Error::NotModelled(format!("parameter {name}: default {other} is not a string"))),
                    None => return Err(Error::ParameterRefused(format!("Parameter \"{name}\" is required but not provided."))),
                },
            };
            let allowed = decl.get("allowedValues").and_then(Json::as_array);
            if let Some(allowed) = allowed.filter(|a| !a.iter().any(|a| a.as_str() == Some(value.as_str()))) {
                return Err(Error::ParameterRefused(format!("parameter {name}: {value:?} is not one of {allowed:?}")));
            }
            if let Some(pattern) = decl.get("allowedPattern").and_then(Json::as_str) {
                let re = regex::Regex::new(pattern).map_err(|e| Error::NotModelled(format!("parameter {name}: allowedPattern: {e}")))?;
                if !re.is_match(&value) {
                    return Err(Error::ParameterRefused(format!("parameter {name}: {value:?} does not match {pattern}")));
                }
            }
            out.insert(name.clone(), value);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stack;

    #[test]
    fn every_remediation_resolves_with_its_document() {
        let t = Template::embedded().unwrap();
        let rems = t.remediations().unwrap();
        assert!(rems.len() >= 6, "{rems:#?}");
        for r in &rems {
            let doc = t.document(&r.document_logical_id).unwrap();
            let refused = doc.parameters_for(&r.execution_parameters("placeholder")).err();
            // Only ResourceId may be refused for a placeholder id.
            assert!(
                refused.as_ref().is_none_or(|e| matches!(e, Error::ParameterRefused(m) if m.contains("ResourceId"))),
                "{}: {refused:?}",
                r.logical_id
            );
            // Each document runs exactly one worker, and that worker belongs to this remediation only.
            let workers = doc.invoked_workers();
            assert_eq!(workers.len(), 1, "{}: {workers:?}", doc.logical_id);
            let (found, _) = t.remediation_for_rule(&r.rule_logical_id).unwrap();
            assert_eq!(found.logical_id, r.logical_id);
            match t.remediation_for_worker(&workers[0]) {
                Ok((found, _)) => assert_eq!(found.logical_id, r.logical_id),
                // A fix serving several rules (fix-s3-enable-default-encryption) is asked for by rule.
                Err(Error::AmbiguousRemediation { remediations, .. }) => assert!(remediations.contains(&r.logical_id)),
                Err(e) => panic!("{}: {e}", r.logical_id),
            }
        }
    }

    #[test]
    fn an_unknown_worker_has_no_remediation() {
        let t = Template::embedded().unwrap();
        let unknown = t.remediation_for_worker("fix-nothing").unwrap_err();
        assert_eq!(unknown, Error::UnknownRemediation { worker: "fix-nothing".into() });
        assert_eq!(unknown.to_string(), "no remediation configuration in the template runs fix-nothing");
    }

    #[test]
    fn the_stack_fills_pseudo_parameters_and_arns() {
        let stack = Stack { region: "eu-west-1".into(), account_id: "210987654321".into(), name: "prod".into() };
        let t = Template::embedded().unwrap().for_stack(stack);
        let (_, doc) = t.remediation_for_rule("S3BucketServerSideEncryptionEnabledRule").unwrap();
        assert!(doc.functions.keys().all(|arn| arn.starts_with("arn:aws:lambda:eu-west-1:210987654321:function:")), "{:?}", doc.functions);
        let params = doc.parameters_for(&BTreeMap::from([("ResourceId".to_string(), vec!["my-bucket".to_string()])])).unwrap();
        assert!(params["AutomationAssumeRole"].starts_with("arn:aws:iam::210987654321:role/"), "{params:?}");
    }
}
