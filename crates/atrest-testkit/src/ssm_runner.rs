//! A small local SSM Automation runner for the documents in `template.yaml`.
//!
//! The stand-in records automation executions but cannot run documents. This module reads the
//! stack template (CloudFormation short-form tags included), resolves each
//! `AWS::Config::RemediationConfiguration` and its `AWS::SSM::Document` for the stack's parameter
//! defaults, and interprets exactly the subset of Automation the template uses:
//! `aws:invokeLambdaFunction` (the worker is called in-process through `FixRunner::step`),
//! `aws:branch` (`StringEquals` choices and `Default`), `aws:sleep` (not slept),
//! `aws:executeScript` with the `fail` handler (the run ends Failed), `nextStep`, `isEnd` and the
//! implicit next step. Anything else fails loudly: a document that grows a new construct must
//! grow its interpretation here too.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use serde_json::{Value as Json, json};
use serde_yaml::Value as Yaml;

use crate::{ACCOUNT_ID, REGION, endpoint, http_request};

/// A run never executes more steps than this, so a loop bug fails instead of hanging.
pub const MAX_STEPS: usize = 500;

/// The stack template, parsed.
pub struct Template {
    root: Yaml,
}

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

/// One Automation document's content, resolved (placeholder ARNs for `!GetAtt`).
#[derive(Debug, Clone)]
pub struct Document {
    pub logical_id: String,
    pub content: Json,
    /// Placeholder Lambda ARN -> the function's `BuildProperties.Binary` (e.g. `fix-ebs-encrypt-volumes`).
    pub functions: BTreeMap<String, String>,
}

/// How a local run ended.
#[derive(Debug, Clone)]
pub struct Execution {
    /// `Success` or `Failed`, as SSM reports it.
    pub status: String,
    pub failure_message: Option<String>,
    /// Document outputs (`Invoke.Status`, ...) with their last values.
    pub outputs: BTreeMap<String, String>,
    /// The names of the steps run, in order.
    pub steps: Vec<String>,
    /// Every worker answer, in order.
    pub worker_outcomes: Vec<atrest::FixOutcome>,
}

impl Execution {
    pub fn succeeded(&self) -> bool {
        self.status == "Success"
    }
}

fn tag_name(t: &serde_yaml::value::TaggedValue) -> String {
    t.tag.to_string().trim_start_matches('!').to_string()
}

fn as_str(v: &Yaml) -> Option<&str> {
    v.as_str()
}

impl Template {
    /// The workspace's `template.yaml`.
    pub fn load() -> Template {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        Template::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Template, String> {
        let root: Yaml = serde_yaml::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
        if root.get("Resources").and_then(Yaml::as_mapping).is_none() {
            return Err("no Resources".into());
        }
        Ok(Template { root })
    }

    fn resources(&self) -> impl Iterator<Item = (&str, &Yaml)> {
        self.root["Resources"].as_mapping().into_iter().flatten().filter_map(|(k, v)| Some((k.as_str()?, v)))
    }

    fn resource(&self, logical_id: &str) -> Result<&Yaml, String> {
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
    fn placeholder_arn(&self, logical_id: &str) -> Result<String, String> {
        Ok(match self.resource_type(logical_id)? {
            "AWS::IAM::Role" => format!("arn:aws:iam::{ACCOUNT_ID}:role/{logical_id}"),
            "AWS::Serverless::Function" | "AWS::Lambda::Function" => {
                format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{logical_id}")
            }
            "AWS::KMS::Key" => format!("arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{logical_id}"),
            other => return Err(format!("no placeholder ARN for {logical_id} ({other})")),
        })
    }

    /// Evaluates a named condition for the stack defaults.
    pub fn condition(&self, name: &str) -> Result<bool, String> {
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
            "Condition" => self.condition(as_str(&t.value).ok_or("!Condition takes a name")?),
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

    fn resolve(&self, v: &Yaml) -> Result<Json, String> {
        self.resolve_opt(v)?.ok_or_else(|| "AWS::NoValue where a value is needed".to_string())
    }

    fn resolve_tagged(&self, t: &serde_yaml::value::TaggedValue) -> Result<Option<Json>, String> {
        let name = tag_name(t);
        match name.as_str() {
            "Ref" => {
                let target = as_str(&t.value).ok_or("!Ref takes a name")?;
                Ok(match target {
                    "AWS::NoValue" => None,
                    "AWS::Region" => Some(json!(REGION)),
                    "AWS::AccountId" => Some(json!(ACCOUNT_ID)),
                    "AWS::Partition" => Some(json!("aws")),
                    "AWS::StackName" => Some(json!("atrest")),
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
                let re = regex::Regex::new(r"\$\{([^}!]+)\}").expect("regex");
                let mut err = None;
                let out = re.replace_all(text, |c: &regex::Captures| {
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
                let cond = self.condition(as_str(&a[0]).ok_or("!If needs a condition name")?)?;
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

    /// Every `AWS::Config::RemediationConfiguration`, in template order.
    pub fn remediations(&self) -> Result<Vec<Remediation>, String> {
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

    /// An Automation document's content, resolved.
    pub fn document(&self, logical_id: &str) -> Result<Document, String> {
        let r = self.resource(logical_id)?;
        if as_str(&r["Type"]) != Some("AWS::SSM::Document") || as_str(&r["Properties"]["DocumentType"]) != Some("Automation") {
            return Err(format!("{logical_id} is not an Automation document"));
        }
        let content = self.resolve(&r["Properties"]["Content"]).map_err(|e| format!("{logical_id}.Content: {e}"))?;
        let mut functions = BTreeMap::new();
        for (id, f) in self.resources() {
            let is_function = matches!(as_str(&f["Type"]), Some("AWS::Serverless::Function" | "AWS::Lambda::Function"));
            if let Some(binary) = as_str(&f["Metadata"]["BuildProperties"]["Binary"]).filter(|_| is_function) {
                functions.insert(self.placeholder_arn(id)?, binary.to_string());
            }
        }
        Ok(Document { logical_id: logical_id.to_string(), content, functions })
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
    pub fn parameters_for(&self, given: &BTreeMap<String, Vec<String>>) -> Result<BTreeMap<String, String>, String> {
        let declared = self.content["parameters"].as_object().ok_or("the document declares no parameters")?;
        if let Some(unknown) = given.keys().find(|k| !declared.contains_key(*k)) {
            return Err(format!("Parameter \"{unknown}\" is not defined in the document."));
        }
        let mut out = BTreeMap::new();
        for (name, decl) in declared {
            if decl["type"].as_str() != Some("String") {
                return Err(format!("parameter {name}: only String parameters are supported"));
            }
            let value = match given.get(name) {
                Some(values) if values.len() == 1 => values[0].clone(),
                Some(values) => return Err(format!("parameter {name}: a String takes one value, got {values:?}")),
                None => match decl.get("default") {
                    Some(Json::String(s)) => s.clone(),
                    Some(other) => return Err(format!("parameter {name}: default {other} is not a string")),
                    None => return Err(format!("Parameter \"{name}\" is required but not provided.")),
                },
            };
            let allowed = decl.get("allowedValues").and_then(Json::as_array);
            if let Some(allowed) = allowed.filter(|a| !a.iter().any(|a| a.as_str() == Some(value.as_str()))) {
                return Err(format!("parameter {name}: {value:?} is not one of {allowed:?}"));
            }
            if let Some(pattern) = decl.get("allowedPattern").and_then(Json::as_str) {
                let re = regex::Regex::new(pattern).map_err(|e| format!("parameter {name}: allowedPattern: {e}"))?;
                if !re.is_match(&value) {
                    return Err(format!("parameter {name}: {value:?} does not match {pattern}"));
                }
            }
            out.insert(name.clone(), value);
        }
        Ok(out)
    }

    fn steps(&self) -> Result<&Vec<Json>, String> {
        self.content["mainSteps"].as_array().ok_or_else(|| "no mainSteps".to_string())
    }

    /// Runs the document with settled parameters. `worker` maps a function's binary name
    /// (`fix-...`) to the runner that plays it. Never panics on document behaviour: an
    /// unsupported construct ends the run Failed with the reason.
    pub async fn run(
        &self,
        parameters: &BTreeMap<String, String>,
        execution_id: &str,
        worker: &dyn Fn(&str) -> Option<Arc<atrest::FixRunner>>,
    ) -> Execution {
        let mut ex = Execution {
            status: "InProgress".into(),
            failure_message: None,
            outputs: BTreeMap::new(),
            steps: Vec::new(),
            worker_outcomes: Vec::new(),
        };
        let mut step_outputs: BTreeMap<String, String> = BTreeMap::new();
        let result = self.interpret(parameters, execution_id, worker, &mut ex, &mut step_outputs).await;
        match result {
            Ok(()) => ex.status = "Success".into(),
            Err(message) => {
                ex.status = "Failed".into();
                ex.failure_message = Some(message);
            }
        }
        for name in self.content["outputs"].as_array().into_iter().flatten().filter_map(Json::as_str) {
            if let Some(v) = step_outputs.get(name) {
                ex.outputs.insert(name.to_string(), v.clone());
            }
        }
        ex
    }

    async fn interpret(
        &self,
        parameters: &BTreeMap<String, String>,
        execution_id: &str,
        worker: &dyn Fn(&str) -> Option<Arc<atrest::FixRunner>>,
        ex: &mut Execution,
        outputs: &mut BTreeMap<String, String>,
    ) -> Result<(), String> {
        let steps = self.steps()?;
        let index_of = |name: &str| steps.iter().position(|s| s["name"].as_str() == Some(name)).ok_or(format!("no step named {name}"));
        let mut at = 0usize;
        loop {
            if ex.steps.len() >= MAX_STEPS {
                return Err(format!("stopped after {MAX_STEPS} steps (a loop that never ends?)"));
            }
            let step = steps.get(at).ok_or_else(|| format!("step index {at} out of range"))?;
            let name = step["name"].as_str().ok_or("a step without a name")?;
            ex.steps.push(name.to_string());
            let action = step["action"].as_str().ok_or_else(|| format!("step {name} has no action"))?;
            let inputs = &step["inputs"];
            let vars = |text: &str, outputs: &BTreeMap<String, String>| substitute(text, parameters, execution_id, outputs);
            let mut branch_to = None;
            match action {
                "aws:invokeLambdaFunction" => {
                    let function = inputs["FunctionName"].as_str().ok_or_else(|| format!("{name}: FunctionName"))?;
                    if inputs["InvocationType"].as_str().unwrap_or("RequestResponse") != "RequestResponse" {
                        return Err(format!("{name}: only RequestResponse invocations are supported"));
                    }
                    let binary = self.functions.get(function).ok_or_else(|| format!("{name}: no function with ARN {function}"))?;
                    let runner = worker(binary).ok_or_else(|| format!("{name}: no worker for {binary}"))?;
                    let payload = substitute_json(&inputs["InputPayload"], &|s| vars(s, outputs))?;
                    let outcome = runner.step(&payload).await;
                    let answer = json!({"Payload": serde_json::to_value(&outcome).map_err(|e| e.to_string())?});
                    ex.worker_outcomes.push(outcome);
                    for o in step["outputs"].as_array().into_iter().flatten() {
                        let out_name = o["Name"].as_str().ok_or_else(|| format!("{name}: output without Name"))?;
                        let selector = o["Selector"].as_str().ok_or_else(|| format!("{name}.{out_name}: no Selector"))?;
                        if o["Type"].as_str().unwrap_or("String") != "String" {
                            return Err(format!("{name}.{out_name}: only String outputs are supported"));
                        }
                        let path = selector.strip_prefix("$.").ok_or_else(|| format!("{name}.{out_name}: selector {selector}"))?;
                        let value = path.split('.').try_fold(&answer, |v, key| v.get(key));
                        let value = match value {
                            Some(Json::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                            None => return Err(format!("{name}.{out_name}: {selector} selects nothing in {answer}")),
                        };
                        outputs.insert(format!("{name}.{out_name}"), value);
                    }
                }
                "aws:branch" => {
                    for choice in inputs["Choices"].as_array().ok_or_else(|| format!("{name}: no Choices"))? {
                        let keys: Vec<&str> = choice.as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
                        if let Some(k) = keys.iter().find(|k| !["NextStep", "Variable", "StringEquals"].contains(k)) {
                            return Err(format!("{name}: unsupported choice operator {k}"));
                        }
                        let variable = vars(choice["Variable"].as_str().ok_or_else(|| format!("{name}: choice Variable"))?, outputs)?;
                        let expected = choice["StringEquals"].as_str().ok_or_else(|| format!("{name}: choice StringEquals"))?;
                        if variable == expected {
                            branch_to = Some(choice["NextStep"].as_str().ok_or_else(|| format!("{name}: choice NextStep"))?.to_string());
                            break;
                        }
                    }
                    if branch_to.is_none() {
                        match inputs["Default"].as_str() {
                            Some(d) => branch_to = Some(d.to_string()),
                            None => return Err(format!("{name}: no choice matched and there is no Default")),
                        }
                    }
                }
                "aws:sleep" => {
                    inputs["Duration"].as_str().ok_or_else(|| format!("{name}: aws:sleep needs Duration"))?;
                }
                "aws:executeScript" => {
                    if inputs["Handler"].as_str() != Some("fail") {
                        return Err(format!("{name}: only the `fail` script handler is supported"));
                    }
                    let input = substitute_json(&inputs["InputPayload"], &|s| vars(s, outputs))?;
                    let text = |k: &str| input[k].as_str().unwrap_or("").trim().to_string();
                    let status = Some(text("Status")).filter(|s| !s.is_empty()).unwrap_or_else(|| "no status".into());
                    let message = Some(text("Message")).filter(|s| !s.is_empty()).unwrap_or_else(|| "The worker gave no reason.".into());
                    return Err(format!(
                        "Remediation of {} did not succeed (worker status: {status}). {message}",
                        input["ResourceId"].as_str().unwrap_or("")
                    ));
                }
                other => return Err(format!("{name}: unsupported action {other}")),
            }
            if let Some(next) = branch_to {
                at = index_of(&next)?;
            } else if step["isEnd"].as_bool() == Some(true) {
                return Ok(());
            } else if let Some(next) = step["nextStep"].as_str() {
                at = index_of(next)?;
            } else if at + 1 < steps.len() {
                at += 1;
            } else {
                return Ok(());
            }
        }
    }
}

/// Replaces `{{ Param }}`, `{{ automation:EXECUTION_ID }}` and `{{ Step.Output }}`. An unknown
/// variable is an error (SSM refuses such documents).
fn substitute(
    text: &str,
    parameters: &BTreeMap<String, String>,
    execution_id: &str,
    outputs: &BTreeMap<String, String>,
) -> Result<String, String> {
    let re = regex::Regex::new(r"\{\{\s*([A-Za-z0-9_.:]+)\s*\}\}").expect("regex");
    let mut err = None;
    let out = re.replace_all(text, |c: &regex::Captures| {
        let var = &c[1];
        let value = match var {
            "automation:EXECUTION_ID" => Some(execution_id.to_string()),
            _ if var.contains('.') => outputs.get(var).cloned(),
            _ => parameters.get(var).cloned(),
        };
        value.unwrap_or_else(|| {
            err = Some(format!("unknown variable {{{{ {var} }}}}"));
            String::new()
        })
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out.into_owned()),
    }
}

fn substitute_json(v: &Json, f: &dyn Fn(&str) -> Result<String, String>) -> Result<Json, String> {
    Ok(match v {
        Json::String(s) => Json::String(f(s)?),
        Json::Array(items) => Json::Array(items.iter().map(|i| substitute_json(i, f)).collect::<Result<_, _>>()?),
        Json::Object(map) => Json::Object(map.iter().map(|(k, v)| Ok((k.clone(), substitute_json(v, f)?))).collect::<Result<_, String>>()?),
        other => other.clone(),
    })
}

/// Plays SSM for an execution the stand-in recorded: reads its parameters, settles them
/// against the document, runs the document and records the final status on the execution
/// (which is what Config's DescribeRemediationExecutionStatus reads).
pub async fn run_recorded_execution(
    sdk: &SdkConfig,
    document: &Document,
    execution_id: &str,
    worker: &dyn Fn(&str) -> Option<Arc<atrest::FixRunner>>,
) -> Execution {
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let out = ssm.get_automation_execution().automation_execution_id(execution_id).send().await.expect("GetAutomationExecution");
    let given: BTreeMap<String, Vec<String>> =
        out.automation_execution().expect("execution").parameters().into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
    let ex = match document.parameters_for(&given) {
        Ok(params) => document.run(&params, execution_id, worker).await,
        Err(e) => Execution {
            status: "Failed".into(),
            failure_message: Some(e),
            outputs: BTreeMap::new(),
            steps: Vec::new(),
            worker_outcomes: Vec::new(),
        },
    };
    record_status(execution_id, &ex).await;
    ex
}

/// Records a run's final status on the stand-in's automation execution.
pub async fn record_status(execution_id: &str, ex: &Execution) {
    let outputs: serde_json::Map<String, Json> = ex.outputs.iter().map(|(k, v)| (k.clone(), json!([v]))).collect();
    let body = json!({"Status": ex.status, "Outputs": outputs, "FailureMessage": ex.failure_message.clone().unwrap_or_default()});
    let url = format!("{}/atrest-ext/automation-executions/{execution_id}/status", endpoint());
    tokio::task::spawn_blocking(move || http_request("POST", &url, &body.to_string())).await.expect("join");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_remediation_resolves_with_its_document() {
        let t = Template::load();
        let rems = t.remediations().unwrap();
        assert!(rems.len() >= 6, "{rems:#?}");
        for r in &rems {
            let doc = t.document(&r.document_logical_id).unwrap();
            let refused = doc.parameters_for(&r.execution_parameters("placeholder")).err();
            // Only ResourceId may be refused for a placeholder id.
            assert!(refused.as_ref().is_none_or(|e| e.contains("ResourceId")), "{}: {refused:?}", r.logical_id);
            assert!(!doc.functions.is_empty());
        }
    }

    #[test]
    fn unknown_intrinsics_fail_loudly() {
        let t = Template::parse("Resources:\n  X:\n    Type: AWS::SSM::Document\n    Properties:\n      DocumentType: Automation\n      Content: !FindInMap [a, b, c]\n").unwrap();
        assert!(t.document("X").unwrap_err().contains("FindInMap"));
    }
}
