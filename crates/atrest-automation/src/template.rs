//! The stack template: CloudFormation short-form intrinsics, resolved for the stack's parameter
//! defaults, and the template this build embeds.

use std::sync::LazyLock;

use serde_json::{Value as Json, json};
use serde_yaml::Value as Yaml;

use crate::Error;

/// The workspace's `template.yaml`, as this build was made with it.
pub const TEMPLATE_YAML: &str = include_str!("../../../template.yaml");

/// `${Name}` in a CloudFormation `!Sub` (not `${!Literal}`).
static SUB_VARIABLE: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"\$\{([^}!]+)\}").expect("static regex"));

/// Where the stack is deployed, for `!Ref AWS::Region` and the ARNs `!GetAtt` stands for. A
/// local run needs no real values: ARNs only name the functions the document invokes.
#[derive(Debug, Clone)]
pub struct Stack {
    pub region: String,
    pub account_id: String,
    pub name: String,
}

impl Default for Stack {
    fn default() -> Self {
        Stack { region: "us-east-1".into(), account_id: "123456789012".into(), name: "atrest".into() }
    }
}

/// The stack template, parsed.
pub struct Template {
    pub(crate) root: Yaml,
    pub(crate) stack: Stack,
}

pub(crate) fn tag_name(t: &serde_yaml::value::TaggedValue) -> String {
    t.tag.to_string().trim_start_matches('!').to_string()
}

pub(crate) fn as_str(v: &Yaml) -> Option<&str> {
    v.as_str()
}

impl Template {
    /// The template this build embeds, for the default stack.
    pub fn embedded() -> Result<Template, Error> {
        Template::parse(TEMPLATE_YAML).map_err(|e| Error::Template(format!("the embedded template.yaml: {e}")))
    }

    /// A template's text, for the default stack.
    pub fn parse(text: &str) -> Result<Template, Error> {
        let root: Yaml = serde_yaml::from_str(text).map_err(|e| Error::Template(format!("not YAML: {e}")))?;
        if root.get("Resources").and_then(Yaml::as_mapping).is_none() {
            return Err(Error::Template("no Resources".into()));
        }
        Ok(Template { root, stack: Stack::default() })
    }

    /// The same template, deployed as `stack`.
    pub fn for_stack(mut self, stack: Stack) -> Template {
        self.stack = stack;
        self
    }

    pub(crate) fn resources(&self) -> impl Iterator<Item = (&str, &Yaml)> {
        self.root["Resources"].as_mapping().into_iter().flatten().filter_map(|(k, v)| Some((k.as_str()?, v)))
    }

    pub(crate) fn resource(&self, logical_id: &str) -> Result<&Yaml, String> {
        self.root["Resources"].get(logical_id).ok_or_else(|| format!("no resource {logical_id}"))
    }

    fn resource_type(&self, logical_id: &str) -> Result<&str, String> {
        as_str(&self.resource(logical_id)?["Type"]).ok_or_else(|| format!("{logical_id} has no Type"))
    }

    /// A stack parameter's default, as `!Ref` gives it (a list for `CommaDelimitedList`).
    fn parameter_default(&self, name: &str) -> Result<Json, String> {
        let p = self.root["Parameters"].get(name).ok_or_else(|| format!("no parameter {name}"))?;
        let default = match &p["Default"] {
            Yaml::String(s) => s.clone(),
            Yaml::Number(n) => n.to_string(),
            Yaml::Bool(b) => b.to_string(),
            Yaml::Null => return Err(format!("parameter {name} has no Default")),
            other => return Err(format!("parameter {name} has an unexpected Default {other:?}")),
        };
        if as_str(&p["Type"]) == Some("CommaDelimitedList") {
            return Ok(Json::Array(default.split(',').map(|s| json!(s)).collect()));
        }
        Ok(Json::String(default))
    }

    /// A placeholder ARN for `!GetAtt <resource>.Arn`, shaped like the real one.
    pub(crate) fn placeholder_arn(&self, logical_id: &str) -> Result<String, String> {
        let Stack { region, account_id: account, .. } = &self.stack;
        Ok(match self.resource_type(logical_id)? {
            "AWS::IAM::Role" => format!("arn:aws:iam::{account}:role/{logical_id}"),
            "AWS::Serverless::Function" | "AWS::Lambda::Function" => {
                format!("arn:aws:lambda:{region}:{account}:function:{logical_id}")
            }
            "AWS::KMS::Key" => format!("arn:aws:kms:{region}:{account}:key/{logical_id}"),
            other => return Err(format!("no placeholder ARN for {logical_id} ({other})")),
        })
    }

    /// Evaluates a named condition for the stack defaults.
    pub fn condition(&self, name: &str) -> Result<bool, Error> {
        self.named_condition(name).map_err(Error::Template)
    }

    fn named_condition(&self, name: &str) -> Result<bool, String> {
        let c = self.root["Conditions"].get(name).ok_or_else(|| format!("no condition {name}"))?;
        self.eval_condition(c)
    }

    fn eval_condition(&self, c: &Yaml) -> Result<bool, String> {
        let Yaml::Tagged(t) = c else { return Err(format!("not a condition: {c:?}")) };
        let args = || t.value.as_sequence().ok_or_else(|| format!("!{} takes a list", tag_name(t)));
        match tag_name(t).as_str() {
            "Equals" => {
                let a = args()?;
                if a.len() != 2 {
                    return Err("!Equals takes two values".into());
                }
                Ok(self.resolve(&a[0])? == self.resolve(&a[1])?)
            }
            "Not" => {
                let a = args()?;
                if a.len() != 1 {
                    return Err("!Not takes one condition".into());
                }
                Ok(!self.eval_condition(&a[0])?)
            }
            "And" => args()?.iter().try_fold(true, |acc, c| Ok(acc & self.eval_condition(c)?)),
            "Or" => args()?.iter().try_fold(false, |acc, c| Ok(acc | self.eval_condition(c)?)),
            "Condition" => self.named_condition(as_str(&t.value).ok_or("!Condition takes a name")?),
            other => Err(format!("unsupported condition function !{other}")),
        }
    }

    /// Resolves a template value for the stack defaults. `None` is `!Ref AWS::NoValue`.
    fn resolve_opt(&self, v: &Yaml) -> Result<Option<Json>, String> {
        Ok(Some(match v {
            Yaml::Null => Json::Null,
            Yaml::Bool(b) => json!(b),
            Yaml::Number(n) => serde_json::to_value(n).map_err(|e| e.to_string())?,
            Yaml::String(s) => json!(s),
            Yaml::Sequence(items) => {
                let mut out = Vec::new();
                for item in items {
                    if let Some(j) = self.resolve_opt(item)? {
                        out.push(j);
                    }
                }
                Json::Array(out)
            }
            Yaml::Mapping(map) => {
                let mut out = serde_json::Map::new();
                for (k, v) in map {
                    let k = k.as_str().ok_or_else(|| format!("non-string key {k:?}"))?;
                    if k.starts_with("Fn::") || k == "Ref" {
                        return Err(format!("long-form intrinsic {k} is not supported; use the short form"));
                    }
                    if let Some(j) = self.resolve_opt(v)? {
                        out.insert(k.to_string(), j);
                    }
                }
                Json::Object(out)
            }
            Yaml::Tagged(t) => return self.resolve_tagged(t),
        }))
    }

    pub(crate) fn resolve(&self, v: &Yaml) -> Result<Json, String> {
        self.resolve_opt(v)?.ok_or_else(|| "AWS::NoValue where a value is needed".to_string())
    }

    fn resolve_tagged(&self, t: &serde_yaml::value::TaggedValue) -> Result<Option<Json>, String> {
        let name = tag_name(t);
        match name.as_str() {
            "Ref" => {
                let target = as_str(&t.value).ok_or("!Ref takes a name")?;
                Ok(match target {
                    "AWS::NoValue" => None,
                    "AWS::Region" => Some(json!(self.stack.region)),
                    "AWS::AccountId" => Some(json!(self.stack.account_id)),
                    "AWS::Partition" => Some(json!("aws")),
                    "AWS::StackName" => Some(json!(self.stack.name)),
                    _ if self.root["Parameters"].get(target).is_some() => Some(self.parameter_default(target)?),
                    // A resource: its logical id stands in for the physical name.
                    _ if self.root["Resources"].get(target).is_some() => Some(json!(target)),
                    _ => return Err(format!("!Ref to unknown {target}")),
                })
            }
            "GetAtt" => {
                let spec = match &t.value {
                    Yaml::String(s) => s.clone(),
                    Yaml::Sequence(parts) => parts.iter().filter_map(Yaml::as_str).collect::<Vec<_>>().join("."),
                    other => return Err(format!("!GetAtt {other:?}")),
                };
                match spec.split_once('.') {
                    Some((id, "Arn")) => Ok(Some(json!(self.placeholder_arn(id)?))),
                    _ => Err(format!("unsupported !GetAtt {spec}")),
                }
            }
            "Sub" => {
                let text = as_str(&t.value).ok_or("only the one-argument !Sub is supported")?;
                let mut err = None;
                let out = SUB_VARIABLE.replace_all(text, |c: &regex::Captures| {
                    let var = &c[1];
                    let resolved = if let Some((id, "Arn")) = var.split_once('.') {
                        self.placeholder_arn(id).map(Json::String)
                    } else {
                        self.resolve(&Yaml::Tagged(Box::new(serde_yaml::value::TaggedValue {
                            tag: serde_yaml::value::Tag::new("Ref"),
                            value: Yaml::String(var.to_string()),
                        })))
                    };
                    match resolved {
                        Ok(Json::String(s)) => s,
                        Ok(other) => {
                            err = Some(format!("!Sub ${{{var}}} is not a string: {other}"));
                            String::new()
                        }
                        Err(e) => {
                            err = Some(e);
                            String::new()
                        }
                    }
                });
                match err {
                    Some(e) => Err(e),
                    None => Ok(Some(json!(out))),
                }
            }
            "If" => {
                let a = t.value.as_sequence().filter(|a| a.len() == 3).ok_or("!If takes [condition, then, else]")?;
                let cond = self.named_condition(as_str(&a[0]).ok_or("!If needs a condition name")?)?;
                self.resolve_opt(if cond { &a[1] } else { &a[2] })
            }
            "Join" => {
                let a = t.value.as_sequence().filter(|a| a.len() == 2).ok_or("!Join takes [separator, list]")?;
                let sep = as_str(&a[0]).ok_or("!Join separator")?;
                let Json::Array(items) = self.resolve(&a[1])? else { return Err("!Join needs a list".into()) };
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string).ok_or_else(|| format!("!Join item {i}")))
                    .collect::<Result<_, _>>()?;
                Ok(Some(json!(parts.join(sep))))
            }
            other => Err(format!("unsupported intrinsic !{other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_intrinsics_fail_loudly() {
        let t = Template::parse("Resources:\n  X:\n    Type: AWS::SSM::Document\n    Properties:\n      DocumentType: Automation\n      Content: !FindInMap [a, b, c]\n").unwrap();
        let refused = t.document("X").unwrap_err();
        assert!(matches!(&refused, Error::Template(m) if m.contains("FindInMap")), "{refused:?}");
    }
}
