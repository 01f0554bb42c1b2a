//! Runs the stack's SSM Automation documents locally, straight from `template.yaml`.
//!
//! The Config console's "Remediate" button starts an SSM Automation execution of the document a
//! `AWS::Config::RemediationConfiguration` names, with `RESOURCE_ID` and the configuration's
//! static values as parameters; the document then loops over the worker Lambda. `atrest
//! remediate` and the console tests take exactly that path here: this crate reads the template
//! (CloudFormation short-form tags included), resolves each remediation configuration and its
//! document for the stack's parameter defaults, settles parameters as SSM does (defaults,
//! `allowedValues`, `allowedPattern`, unknown and missing parameters refused) and interprets
//! exactly the subset of Automation the template uses, with each action's outputs as AWS
//! documents them:
//!
//! - `aws:invokeLambdaFunction`: the worker is called in-process through `FixRunner::step`. Its
//!   outputs are `StatusCode` (200) and `Payload`, a *string*: the JSON of what the function
//!   returned, or Lambda's error object (`errorType`, `errorMessage`) when it panicked (a
//!   function error is an answer, not a failed step). Selectors into `Payload` are refused.
//! - `aws:executeScript`: only scripts the runner knows, by handler and exact text
//!   ([`known_script`]), whose semantics are implemented here in Rust (no Python needed);
//!   `tests/python_scripts.rs` runs the template's Python over a table of inputs and proves
//!   both agree. The returned object is selectable as `$.Payload.<key>`; a raised exception
//!   fails the step, and with `onFailure: Abort` the run.
//! - `aws:branch` (`StringEquals` choices and `Default`), `aws:sleep` (at most 604,799 s),
//!   `nextStep`, `isEnd` and the implicit next step.
//!
//! Anything else (an action, step property, operator, selector or variable not modelled here)
//! is refused when the document is loaded ([`Document::check`]): a document that grows a new
//! construct must grow its interpretation here too.
//!
//! The template is embedded at build time ([`Template::embedded`]), so the `atrest` binary runs
//! the documents of the stack it was built with, wherever it is run.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde_json::{Value as Json, json};
use serde_yaml::Value as Yaml;

/// The workspace's `template.yaml`, as this build was made with it.
pub const TEMPLATE_YAML: &str = include_str!("../../../template.yaml");

/// `${Name}` in a CloudFormation `!Sub` (not `${!Literal}`).
static SUB_VARIABLE: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"\$\{([^}!]+)\}").expect("static regex"));
/// `{{ Parameter }}`, `{{ Step.Output }}` or `{{ automation:EXECUTION_ID }}` in a document.
static DOCUMENT_VARIABLE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"\{\{\s*([A-Za-z0-9_.:]+)\s*\}\}").expect("static regex"));

/// A run never executes more document steps than this per worker turn allowed, so a loop bug
/// fails instead of hanging.
const STEPS_PER_TURN: usize = 5;

/// The longest `aws:sleep`: "The maximum duration is 604799 seconds (7 days)".
pub const MAX_SLEEP_SECONDS: u64 = 604_799;

const INVOKE_LAMBDA: &str = "aws:invokeLambdaFunction";
const EXECUTE_SCRIPT: &str = "aws:executeScript";
const BRANCH: &str = "aws:branch";
const SLEEP: &str = "aws:sleep";

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
    root: Yaml,
    stack: Stack,
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
    /// Document outputs (`Answer.Status`, `Answer.Message`) with their last values.
    pub outputs: BTreeMap<String, String>,
    /// The names of the steps run, in order.
    pub steps: Vec<String>,
    /// Every worker answer, in order.
    pub worker_outcomes: Vec<atrest::FixOutcome>,
}

impl Execution {
    fn started() -> Execution {
        Execution {
            status: "InProgress".into(),
            failure_message: None,
            outputs: BTreeMap::new(),
            steps: Vec::new(),
            worker_outcomes: Vec::new(),
        }
    }

    /// A run that ended before its first step (SSM refused the parameters).
    pub fn refused(message: String) -> Execution {
        Execution { status: "Failed".into(), failure_message: Some(message), ..Execution::started() }
    }

    pub fn succeeded(&self) -> bool {
        self.status == "Success"
    }

    /// The worker's last answer, if it was called.
    pub fn last_outcome(&self) -> Option<&atrest::FixOutcome> {
        self.worker_outcomes.last()
    }
}

/// What `aws:sleep` does in a local run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sleep {
    /// Wait as long as the step's `Duration` says, as SSM would.
    AsDocumented,
    /// Wait this long instead (tests: zero).
    Fixed(Duration),
}

/// What a run reports while it goes, for a progress display.
#[derive(Debug)]
pub enum Progress<'a> {
    /// The worker answered (turns count from 1).
    Turn { number: usize, outcome: &'a atrest::FixOutcome },
    /// The document waits this long before the next turn.
    Waiting(Duration),
}

/// Bounds of a local run, and who hears of its progress.
#[derive(Clone, Copy)]
pub struct RunOptions<'a> {
    /// The run ends Failed once the worker has been invoked this many times and still answers
    /// InProgress; the state it left in AWS lets a later run resume.
    pub max_turns: usize,
    pub sleep: Sleep,
    pub on_progress: Option<&'a (dyn Fn(Progress<'_>) + Sync)>,
}

impl RunOptions<'_> {
    /// No waiting, and enough turns for any fix against the stand-in.
    pub fn immediate() -> RunOptions<'static> {
        RunOptions { max_turns: 120, sleep: Sleep::Fixed(Duration::ZERO), on_progress: None }
    }

    fn report(&self, progress: Progress<'_>) {
        if let Some(on_progress) = self.on_progress {
            on_progress(progress);
        }
    }
}

/// An ISO 8601 duration as `aws:sleep` takes it (`PT30S`, `PT1M30S`, `PT2H`, `P1D`); SSM caps it
/// at 604,799 seconds (one second short of 7 days).
pub fn parse_sleep_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("aws:sleep Duration {text:?} is not an ISO 8601 duration such as PT30S");
    let rest = text.strip_prefix('P').ok_or_else(bad)?;
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut seconds = 0u64;
    let mut add = |part: &str, units: &[(char, u64)]| -> Result<(), String> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let factor = units.iter().find(|(u, _)| *u == c).map(|(_, f)| *f).ok_or_else(bad)?;
            let n: u64 = number.parse().map_err(|_| bad())?;
            seconds = seconds.saturating_add(n.saturating_mul(factor));
            number.clear();
        }
        if number.is_empty() { Ok(()) } else { Err(bad()) }
    };
    add(days, &[('D', 86_400)])?;
    add(time, &[('H', 3_600), ('M', 60), ('S', 1)])?;
    if days.is_empty() && time.is_empty() {
        return Err(bad());
    }
    if seconds > MAX_SLEEP_SECONDS {
        return Err(format!("aws:sleep Duration {text} is over SSM's limit of {MAX_SLEEP_SECONDS} seconds"));
    }
    Ok(Duration::from_secs(seconds))
}

fn tag_name(t: &serde_yaml::value::TaggedValue) -> String {
    t.tag.to_string().trim_start_matches('!').to_string()
}

fn as_str(v: &Yaml) -> Option<&str> {
    v.as_str()
}

impl Template {
    /// The template this build embeds, for the default stack.
    pub fn embedded() -> Result<Template, String> {
        Template::parse(TEMPLATE_YAML).map_err(|e| format!("the embedded template.yaml: {e}"))
    }

    /// A template's text, for the default stack.
    pub fn parse(text: &str) -> Result<Template, String> {
        let root: Yaml = serde_yaml::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
        if root.get("Resources").and_then(Yaml::as_mapping).is_none() {
            return Err("no Resources".into());
        }
        Ok(Template { root, stack: Stack::default() })
    }

    /// The same template, deployed as `stack`.
    pub fn for_stack(mut self, stack: Stack) -> Template {
        self.stack = stack;
        self
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
        let document = Document { logical_id: logical_id.to_string(), content, functions };
        document.check().map_err(|e| format!("{logical_id}: {e}"))?;
        Ok(document)
    }

    /// The remediation whose document invokes the worker `binary` (e.g. `fix-s3-enable-default-encryption`),
    /// with that document.
    pub fn remediation_for_worker(&self, binary: &str) -> Result<(Remediation, Document), String> {
        let mut found = Vec::new();
        for r in self.remediations()? {
            let doc = self.document(&r.document_logical_id)?;
            if doc.invoked_workers().iter().any(|w| w == binary) {
                found.push((r, doc));
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(format!("no remediation configuration in the template runs {binary}")),
            _ => Err(format!(
                "{} remediation configurations run {binary}: {}",
                found.len(),
                found.iter().map(|(r, _)| r.logical_id.as_str()).collect::<Vec<_>>().join(", ")
            )),
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

    /// The worker binaries (`fix-...`) the document's `aws:invokeLambdaFunction` steps call.
    pub fn invoked_workers(&self) -> Vec<String> {
        let steps = self.content["mainSteps"].as_array().into_iter().flatten();
        steps
            .filter(|s| s["action"].as_str() == Some("aws:invokeLambdaFunction"))
            .filter_map(|s| self.functions.get(s["inputs"]["FunctionName"].as_str()?).cloned())
            .collect()
    }

    fn steps(&self) -> Result<&Vec<Json>, String> {
        self.content["mainSteps"].as_array().ok_or_else(|| "no mainSteps".to_string())
    }

    /// Refuses what the runner does not model, as SSM refuses an invalid document when it is
    /// created: unknown top-level keys, step properties, actions, inputs, operators, selectors,
    /// scripts and variables, and steps that name missing steps. A document that passes runs
    /// exactly as interpreted here.
    pub fn check(&self) -> Result<(), String> {
        let c = &self.content;
        let top = c.as_object().ok_or("the content is not a map")?;
        only_keys("the document", top, &["schemaVersion", "description", "assumeRole", "parameters", "outputs", "mainSteps"])?;
        if c["schemaVersion"].as_str() != Some("0.3") {
            return Err("Automation documents here use schemaVersion 0.3".into());
        }
        let parameters = c["parameters"].as_object().ok_or("the document declares no parameters")?;
        for (name, decl) in parameters {
            let decl = decl.as_object().ok_or_else(|| format!("parameter {name} is not a map"))?;
            only_keys(&format!("parameter {name}"), decl, &["type", "description", "default", "allowedValues", "allowedPattern"])?;
            if decl.get("type").and_then(Json::as_str) != Some("String") {
                return Err(format!("parameter {name}: only String parameters are modelled"));
            }
        }
        let steps = self.steps()?;
        let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().ok_or("a step without a name")).collect::<Result<_, _>>()?;
        if let Some(dup) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)).map(|(_, n)| n) {
            return Err(format!("two steps are named {dup}"));
        }
        let target = |from: &str, to: &Json| -> Result<(), String> {
            let to = to.as_str().ok_or_else(|| format!("{from}: a step name must be a string"))?;
            if names.contains(&to) { Ok(()) } else { Err(format!("{from}: no step named {to}")) }
        };
        // Outputs each step makes available as {{ Step.Name }}.
        let mut available: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for step in steps {
            let name = step["name"].as_str().unwrap_or_default();
            let map = step.as_object().ok_or_else(|| format!("step {name} is not a map"))?;
            only_keys(
                &format!("step {name}"),
                map,
                &["name", "action", "description", "inputs", "outputs", "nextStep", "isEnd", "timeoutSeconds", "maxAttempts", "onFailure"],
            )?;
            let action = step["action"].as_str().ok_or_else(|| format!("step {name} has no action"))?;
            let inputs = step["inputs"].as_object().ok_or_else(|| format!("step {name} has no inputs"))?;
            if let Some(on_failure) = map.get("onFailure").filter(|v| v.as_str() != Some("Abort")) {
                return Err(format!("step {name}: onFailure {on_failure} is not modelled (only Abort, the default)"));
            }
            if let Some(attempts) = map.get("maxAttempts").filter(|v| v.as_u64().is_none_or(|n| n < 1)) {
                return Err(format!("step {name}: maxAttempts {attempts} is not a positive integer"));
            }
            if let Some(next) = map.get("nextStep") {
                target(name, next)?;
            }
            if map.get("isEnd").is_some_and(|v| !v.is_boolean()) {
                return Err(format!("step {name}: isEnd must be true or false"));
            }
            // The documented per-action caps of timeoutSeconds.
            let cap = match action {
                INVOKE_LAMBDA => Some(300),
                EXECUTE_SCRIPT => Some(600),
                _ => None,
            };
            if let Some(timeout) = map.get("timeoutSeconds") {
                match (timeout.as_u64(), cap) {
                    (Some(t), Some(cap)) if (1..=cap).contains(&t) => {}
                    (_, Some(cap)) => return Err(format!("step {name}: timeoutSeconds {timeout} is outside 1..={cap} for {action}")),
                    (_, None) => return Err(format!("step {name}: timeoutSeconds on {action} is not modelled")),
                }
            }
            let declared =
                step.get("outputs").map(|o| o.as_array().ok_or_else(|| format!("step {name}: outputs is not a list"))).transpose()?;
            let declared = declared.map(Vec::as_slice).unwrap_or_default();
            let mut outputs = Vec::new();
            match action {
                INVOKE_LAMBDA => {
                    only_keys(&format!("step {name} inputs"), inputs, &["FunctionName", "InvocationType", "InputPayload"])?;
                    let function = inputs.get("FunctionName").and_then(Json::as_str).ok_or_else(|| format!("{name}: FunctionName"))?;
                    if !self.functions.contains_key(function) {
                        return Err(format!("{name}: no function of the template has the ARN {function}"));
                    }
                    if inputs.get("InvocationType").is_some_and(|t| t.as_str() != Some("RequestResponse")) {
                        return Err(format!("{name}: only RequestResponse invocations are modelled"));
                    }
                    // FunctionError and LogResult exist only when the function failed or LogType
                    // is Tail; what a reference to an absent output gives is not documented.
                    outputs.extend(["Payload".to_string(), "StatusCode".to_string()]);
                    for o in declared {
                        let (out_name, selector, kind) = declared_output(name, o)?;
                        let expected = match selector {
                            "$.Payload" => "String",
                            "$.StatusCode" => "Integer",
                            _ => {
                                return Err(format!(
                                    "{name}.{out_name}: selector {selector} is not modelled: {INVOKE_LAMBDA} outputs StatusCode, \
                                     FunctionError, LogResult and Payload, and Payload is a string (the JSON of the \
                                     function's result), so nothing can be selected inside it; parse it in an \
                                     {EXECUTE_SCRIPT} step"
                                ));
                            }
                        };
                        if kind != expected {
                            return Err(format!("{name}.{out_name}: {selector} is of Type {expected}, not {kind}"));
                        }
                        outputs.push(out_name.to_string());
                    }
                }
                EXECUTE_SCRIPT => {
                    only_keys(&format!("step {name} inputs"), inputs, &["Runtime", "Handler", "Script", "InputPayload"])?;
                    if inputs.get("Runtime").and_then(Json::as_str) != Some("python3.11") {
                        return Err(format!("{name}: only Runtime python3.11 is modelled"));
                    }
                    let handler = inputs.get("Handler").and_then(Json::as_str).ok_or_else(|| format!("{name}: Handler"))?;
                    let script = inputs.get("Script").and_then(Json::as_str).ok_or_else(|| format!("{name}: Script"))?;
                    if known_script(handler, script).is_none() {
                        return Err(format!(
                            "{name}: the script of handler {handler} is not one the runner knows; give it a Rust \
                             interpretation in known_script (and a row in tests/python_scripts.rs)"
                        ));
                    }
                    if !inputs.get("InputPayload").is_some_and(Json::is_object) {
                        return Err(format!("{name}: InputPayload must be a map"));
                    }
                    for o in declared {
                        let (out_name, selector, kind) = declared_output(name, o)?;
                        let key = selector
                            .strip_prefix("$.Payload.")
                            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                        if key.is_none() || kind != "String" {
                            return Err(format!(
                                "{name}.{out_name}: only String outputs selecting $.Payload.<key> are modelled, not {selector} ({kind})"
                            ));
                        }
                        outputs.push(out_name.to_string());
                    }
                }
                BRANCH => {
                    only_keys(&format!("step {name} inputs"), inputs, &["Choices", "Default"])?;
                    let choices = inputs
                        .get("Choices")
                        .and_then(Json::as_array)
                        .filter(|c| !c.is_empty())
                        .ok_or_else(|| format!("{name}: no Choices"))?;
                    for choice in choices {
                        let choice = choice.as_object().ok_or_else(|| format!("{name}: a choice is not a map"))?;
                        if let Some(k) = choice.keys().find(|k| !["NextStep", "Variable", "StringEquals"].contains(&k.as_str())) {
                            return Err(format!("{name}: choice operator {k} is not modelled (only StringEquals)"));
                        }
                        for k in ["NextStep", "Variable", "StringEquals"] {
                            if !choice.get(k).is_some_and(Json::is_string) {
                                return Err(format!("{name}: a choice needs {k} (a string)"));
                            }
                        }
                        target(name, &choice["NextStep"])?;
                    }
                    if let Some(default) = inputs.get("Default") {
                        target(name, default)?;
                    }
                }
                SLEEP => {
                    only_keys(&format!("step {name} inputs"), inputs, &["Duration"])?;
                    let duration =
                        inputs.get("Duration").and_then(Json::as_str).ok_or_else(|| format!("{name}: aws:sleep needs Duration"))?;
                    if !duration.contains("{{") {
                        parse_sleep_duration(duration).map_err(|e| format!("{name}: {e}"))?;
                    }
                }
                other => return Err(format!("{name}: action {other} is not modelled")),
            }
            if action != INVOKE_LAMBDA && action != EXECUTE_SCRIPT && !declared.is_empty() {
                return Err(format!("{name}: {action} has no outputs to declare"));
            }
            available.insert(name.to_string(), outputs);
        }
        // Every variable names a parameter, the execution id or a step output that exists.
        let known = |var: &str| -> bool {
            match var.split_once('.') {
                _ if var == "automation:EXECUTION_ID" => true,
                Some((step, output)) => available.get(step).is_some_and(|o| o.iter().any(|x| x == output)),
                None => parameters.contains_key(var),
            }
        };
        let mut texts = Vec::new();
        strings_in(&c["assumeRole"], &mut texts);
        for step in steps {
            strings_in(&step["inputs"], &mut texts);
        }
        for text in texts {
            let matched = DOCUMENT_VARIABLE.find_iter(text).count();
            if text.matches("{{").count() != matched {
                return Err(format!("{text:?}: a {{{{ }}}} variable the runner does not model"));
            }
            for capture in DOCUMENT_VARIABLE.captures_iter(text) {
                if !known(&capture[1]) {
                    return Err(format!("{{{{ {} }}}} names no parameter or modelled step output", &capture[1]));
                }
            }
        }
        for output in c["outputs"].as_array().into_iter().flatten() {
            let output = output.as_str().ok_or("document outputs are strings")?;
            if !output.contains('.') || !known(output) {
                return Err(format!("document output {output} names no modelled step output"));
            }
        }
        Ok(())
    }

    /// Runs the document with settled parameters. `worker` maps a function's binary name
    /// (`fix-...`) to the runner that plays it. Never panics on document behaviour: an
    /// unsupported construct ends the run Failed with the reason.
    pub async fn run(
        &self,
        parameters: &BTreeMap<String, String>,
        execution_id: &str,
        worker: &dyn Fn(&str) -> Option<Arc<atrest::FixRunner>>,
        options: &RunOptions<'_>,
    ) -> Execution {
        let mut ex = Execution::started();
        let mut step_outputs: BTreeMap<String, String> = BTreeMap::new();
        let result = match self.check() {
            Ok(()) => self.interpret(parameters, execution_id, worker, options, &mut ex, &mut step_outputs).await,
            Err(e) => Err(e),
        };
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
        options: &RunOptions<'_>,
        ex: &mut Execution,
        outputs: &mut BTreeMap<String, String>,
    ) -> Result<(), String> {
        let steps = self.steps()?;
        let index_of = |name: &str| steps.iter().position(|s| s["name"].as_str() == Some(name)).ok_or(format!("no step named {name}"));
        let mut at = 0usize;
        let mut turns = 0usize;
        loop {
            let max_steps = (options.max_turns + 1) * STEPS_PER_TURN;
            if ex.steps.len() >= max_steps {
                return Err(format!("stopped after {max_steps} steps without a worker call in between (a loop that never ends?)"));
            }
            let step = steps.get(at).ok_or_else(|| format!("step index {at} out of range"))?;
            let name = step["name"].as_str().ok_or("a step without a name")?;
            ex.steps.push(name.to_string());
            let action = step["action"].as_str().ok_or_else(|| format!("step {name} has no action"))?;
            let inputs = &step["inputs"];
            let vars = |text: &str, outputs: &BTreeMap<String, String>| substitute(text, parameters, execution_id, outputs);
            let declared = step["outputs"].as_array().map(Vec::as_slice).unwrap_or_default();
            let mut branch_to = None;
            match action {
                INVOKE_LAMBDA => {
                    let function = inputs["FunctionName"].as_str().ok_or_else(|| format!("{name}: FunctionName"))?;
                    let binary = self.functions.get(function).ok_or_else(|| format!("{name}: no function with ARN {function}"))?;
                    let runner = worker(binary).ok_or_else(|| format!("{name}: no worker for {binary}"))?;
                    if turns >= options.max_turns {
                        return Err(format!(
                            "gave up after {} worker turns with the remediation still in progress; run it again to resume from where it stands",
                            options.max_turns
                        ));
                    }
                    turns += 1;
                    let request = substitute_json(&inputs["InputPayload"], &|s| vars(s, outputs))?;
                    // Lambda answers a function that panics (or times out) with its error object
                    // and FunctionError set; the step itself succeeds.
                    let payload = match CatchUnwind(Box::pin(runner.step(&request))).await {
                        Ok(outcome) => {
                            options.report(Progress::Turn { number: turns, outcome: &outcome });
                            let payload = serde_json::to_string(&outcome).map_err(|e| e.to_string())?;
                            ex.worker_outcomes.push(outcome);
                            payload
                        }
                        Err(panic) => json!({"errorType": "Panic", "errorMessage": panic}).to_string(),
                    };
                    let status_code = "200".to_string();
                    for o in declared {
                        let (out_name, selector, _) = declared_output(name, o)?;
                        let value = if selector == "$.Payload" { payload.clone() } else { status_code.clone() };
                        outputs.insert(format!("{name}.{out_name}"), value);
                    }
                    outputs.insert(format!("{name}.StatusCode"), status_code);
                    outputs.insert(format!("{name}.Payload"), payload);
                }
                BRANCH => {
                    for choice in inputs["Choices"].as_array().ok_or_else(|| format!("{name}: no Choices"))? {
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
                SLEEP => {
                    let documented = inputs["Duration"].as_str().ok_or_else(|| format!("{name}: aws:sleep needs Duration"))?;
                    let documented = parse_sleep_duration(&vars(documented, outputs)?).map_err(|e| format!("{name}: {e}"))?;
                    let wait = match options.sleep {
                        Sleep::AsDocumented => documented,
                        Sleep::Fixed(d) => d,
                    };
                    if !wait.is_zero() {
                        options.report(Progress::Waiting(wait));
                        tokio::time::sleep(wait).await;
                    }
                }
                EXECUTE_SCRIPT => {
                    let handler = inputs["Handler"].as_str().unwrap_or_default();
                    let script = inputs["Script"].as_str().unwrap_or_default();
                    let run = known_script(handler, script).ok_or_else(|| format!("{name}: unknown script for handler {handler}"))?;
                    let events = substitute_json(&inputs["InputPayload"], &|s| vars(s, outputs))?;
                    // A raised exception fails the step; onFailure Abort fails the run with it.
                    let returned = run(&events)?;
                    for o in declared {
                        let (out_name, selector, _) = declared_output(name, o)?;
                        let key = selector.strip_prefix("$.Payload.").unwrap_or_default();
                        let value = returned.get(key).and_then(Json::as_str).ok_or_else(|| {
                            format!("{name}.{out_name}: {selector} selects no string in what {handler} returned: {returned}")
                        })?;
                        outputs.insert(format!("{name}.{out_name}"), value.to_string());
                    }
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

/// `(Name, Selector, Type)` of a declared step output (`Type` defaults to String).
fn declared_output<'a>(step: &str, o: &'a Json) -> Result<(&'a str, &'a str, &'a str), String> {
    let map = o.as_object().ok_or_else(|| format!("{step}: an output is not a map"))?;
    only_keys(&format!("{step} output"), map, &["Name", "Selector", "Type"])?;
    let name = o["Name"].as_str().ok_or_else(|| format!("{step}: output without Name"))?;
    let selector = o["Selector"].as_str().ok_or_else(|| format!("{step}.{name}: no Selector"))?;
    Ok((name, selector, o["Type"].as_str().unwrap_or("String")))
}

fn only_keys(what: &str, map: &serde_json::Map<String, Json>, allowed: &[&str]) -> Result<(), String> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("{what}: {k} is not modelled by the runner")),
        None => Ok(()),
    }
}

fn strings_in<'a>(v: &'a Json, out: &mut Vec<&'a str>) {
    match v {
        Json::String(s) => out.push(s),
        Json::Array(items) => items.iter().for_each(|i| strings_in(i, out)),
        Json::Object(map) => map.values().for_each(|i| strings_in(i, out)),
        _ => {}
    }
}

/// Polls a future and turns a panic into the panic's message, as the Lambda runtime reports a
/// panicking handler as a function error instead of dying with it.
struct CatchUnwind<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future> std::future::Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let inner = self.get_mut().0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the handler panicked".into());
                std::task::Poll::Ready(Err(message))
            }
        }
    }
}

/// The `read_answer` script of every document's Answer step, exactly as in template.yaml.
pub const READ_ANSWER_SCRIPT: &str = r#"import json

STATUSES = ("InProgress", "Succeeded", "Failed")


def text(value):
    return value if isinstance(value, str) else ""


def read_answer(events, context):
    # Payload is a string: the JSON of what the worker returned, or Lambda's error object
    # (errorType, errorMessage) when the function crashed or timed out.
    payload = text(events.get("Payload"))
    try:
        answer = json.loads(payload)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return {"Status": "Unreadable", "Message": "The worker's answer is not a JSON object: " + payload[:500]}
    if "errorType" in answer or "errorMessage" in answer:
        return {
            "Status": "WorkerError",
            "Message": "The worker stopped with an error before answering ({}): {}".format(
                text(answer.get("errorType")) or "no error type", text(answer.get("errorMessage")) or "no message"),
        }
    status = answer.get("Status")
    message = text(answer.get("Message"))
    if status not in STATUSES:
        return {"Status": "Unreadable", "Message": "The worker's answer has no known Status. " + message}
    return {"Status": status, "Message": message}"#;

/// The `fail` script of every document's Fail step, exactly as in template.yaml.
pub const FAIL_SCRIPT: &str = r#"def fail(events, context):
    status = (events.get("Status") or "").strip() or "no status"
    message = (events.get("Message") or "").strip() or "The worker gave no reason."
    raise Exception(
        "Remediation of {} did not succeed (worker status: {}). {}".format(
            events.get("ResourceId"), status, message))"#;

/// What a known `aws:executeScript` script does, in Rust: the handler's return value, or the
/// message of the exception it raises.
pub type Script = fn(&Json) -> Result<Json, String>;

/// The Rust semantics of a script the runner knows, by handler and exact text; `None` for any
/// other (refused at load time).
pub fn known_script(handler: &str, script: &str) -> Option<Script> {
    match (handler, script) {
        ("read_answer", READ_ANSWER_SCRIPT) => Some(read_answer),
        ("fail", FAIL_SCRIPT) => Some(fail),
        _ => None,
    }
}

/// Python's `str(value)` for the JSON values an InputPayload holds.
fn python_text(v: Option<&Json>) -> String {
    match v {
        None | Some(Json::Null) => "None".into(),
        Some(Json::String(s)) => s.clone(),
        Some(Json::Bool(b)) => if *b { "True" } else { "False" }.into(),
        Some(other) => other.to_string(),
    }
}

/// Python's `str.strip()`: Rust's whitespace plus the separators U+001C..U+001F that Python
/// also counts as whitespace.
fn python_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// `text(value)` of the script: the value if it is a string, else "".
fn string_or_empty(v: Option<&Json>) -> &str {
    v.and_then(Json::as_str).unwrap_or("")
}

fn read_answer(events: &Json) -> Result<Json, String> {
    let payload = string_or_empty(events.get("Payload"));
    // Python's json.loads and serde_json agree on every RFC 8259 text, which is all Lambda
    // returns; they differ only on extensions (NaN, lone surrogates) no worker produces.
    let answer = match serde_json::from_str::<Json>(payload) {
        Ok(Json::Object(answer)) => answer,
        _ => {
            let head: String = payload.chars().take(500).collect();
            return Ok(json!({"Status": "Unreadable", "Message": format!("The worker's answer is not a JSON object: {head}")}));
        }
    };
    if answer.contains_key("errorType") || answer.contains_key("errorMessage") {
        let or = |s: &str, default: &str| if s.is_empty() { default.to_string() } else { s.to_string() };
        let message = format!(
            "The worker stopped with an error before answering ({}): {}",
            or(string_or_empty(answer.get("errorType")), "no error type"),
            or(string_or_empty(answer.get("errorMessage")), "no message")
        );
        return Ok(json!({"Status": "WorkerError", "Message": message}));
    }
    let message = string_or_empty(answer.get("Message"));
    Ok(match answer.get("Status").and_then(Json::as_str) {
        Some(status @ ("InProgress" | "Succeeded" | "Failed")) => json!({"Status": status, "Message": message}),
        _ => json!({"Status": "Unreadable", "Message": format!("The worker's answer has no known Status. {message}")}),
    })
}

fn fail(events: &Json) -> Result<Json, String> {
    let field = |key: &str, default: &str| {
        let text = python_strip(string_or_empty(events.get(key)));
        if text.is_empty() { default.to_string() } else { text.to_string() }
    };
    Err(format!(
        "Remediation of {} did not succeed (worker status: {}). {}",
        python_text(events.get("ResourceId")),
        field("Status", "no status"),
        field("Message", "The worker gave no reason.")
    ))
}

/// Replaces `{{ Param }}`, `{{ automation:EXECUTION_ID }}` and `{{ Step.Output }}`. An unknown
/// variable is an error (SSM refuses such documents).
fn substitute(
    text: &str,
    parameters: &BTreeMap<String, String>,
    execution_id: &str,
    outputs: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut err = None;
    let out = DOCUMENT_VARIABLE.replace_all(text, |c: &regex::Captures| {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use atrest::{Fix, FixContext, FixOutcome, FixRequest, FixRunner, FixSpec, FixStatus};

    use super::*;

    #[test]
    fn every_remediation_resolves_with_its_document() {
        let t = Template::embedded().unwrap();
        let rems = t.remediations().unwrap();
        assert!(rems.len() >= 6, "{rems:#?}");
        for r in &rems {
            let doc = t.document(&r.document_logical_id).unwrap();
            let refused = doc.parameters_for(&r.execution_parameters("placeholder")).err();
            // Only ResourceId may be refused for a placeholder id.
            assert!(refused.as_ref().is_none_or(|e| e.contains("ResourceId")), "{}: {refused:?}", r.logical_id);
            // Each document runs exactly one worker, and that worker belongs to this remediation only.
            let workers = doc.invoked_workers();
            assert_eq!(workers.len(), 1, "{}: {workers:?}", doc.logical_id);
            let (found, _) = t.remediation_for_worker(&workers[0]).unwrap();
            assert_eq!(found.logical_id, r.logical_id);
        }
    }

    #[test]
    fn an_unknown_worker_has_no_remediation() {
        let t = Template::embedded().unwrap();
        assert!(t.remediation_for_worker("fix-nothing").unwrap_err().contains("fix-nothing"));
    }

    #[test]
    fn unknown_intrinsics_fail_loudly() {
        let t = Template::parse("Resources:\n  X:\n    Type: AWS::SSM::Document\n    Properties:\n      DocumentType: Automation\n      Content: !FindInMap [a, b, c]\n").unwrap();
        assert!(t.document("X").unwrap_err().contains("FindInMap"));
    }

    #[test]
    fn the_stack_fills_pseudo_parameters_and_arns() {
        let stack = Stack { region: "eu-west-1".into(), account_id: "210987654321".into(), name: "prod".into() };
        let t = Template::embedded().unwrap().for_stack(stack);
        let (_, doc) = t.remediation_for_worker("fix-s3-enable-default-encryption").unwrap();
        assert!(doc.functions.keys().all(|arn| arn.starts_with("arn:aws:lambda:eu-west-1:210987654321:function:")), "{:?}", doc.functions);
        let params = doc.parameters_for(&BTreeMap::from([("ResourceId".to_string(), vec!["my-bucket".to_string()])])).unwrap();
        assert!(params["AutomationAssumeRole"].starts_with("arn:aws:iam::210987654321:role/"), "{params:?}");
    }

    #[test]
    fn sleep_durations_are_iso_8601() {
        for (text, seconds) in [("PT30S", 30), ("PT1M30S", 90), ("PT2H", 7200), ("P1D", 86_400), ("P1DT1S", 86_401), ("PT0S", 0)] {
            assert_eq!(parse_sleep_duration(text), Ok(Duration::from_secs(seconds)), "{text}");
        }
        for text in ["30", "PT", "P", "PT30", "PTS", "PT-1S", "PT1X", "P8D", ""] {
            assert!(parse_sleep_duration(text).is_err(), "{text} should be refused");
        }
        // aws:sleep: "The maximum duration is 604799 seconds (7 days)": seven full days are one
        // second too many.
        assert_eq!(parse_sleep_duration("PT604799S"), Ok(Duration::from_secs(604_799)));
        assert_eq!(parse_sleep_duration("P6DT23H59M59S"), Ok(Duration::from_secs(604_799)));
        for text in ["P7D", "PT604800S", "PT168H"] {
            assert!(parse_sleep_duration(text).unwrap_err().contains("604799"), "{text} should be refused");
        }
    }

    /// A worker that answers InProgress `busy_turns` times, then `last`. It makes no AWS call:
    /// these tests are about the document's loop, not a fix.
    struct Scripted {
        busy_turns: usize,
        last: FixStatus,
        calls: AtomicUsize,
    }

    #[atrest::async_trait]
    impl Fix for Scripted {
        /// The real S3 fix's parameters, so the document's payload is accepted.
        fn spec(&self) -> &'static FixSpec {
            fix_s3_enable_default_encryption::S3EnableDefaultEncryption.spec()
        }
        async fn reconcile(&self, _ctx: &FixContext, req: &FixRequest) -> atrest::Result<FixOutcome> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(match (n < self.busy_turns, self.last) {
                (true, _) => FixOutcome::in_progress(self.spec(), req, format!("turn {n}")),
                (false, FixStatus::Succeeded) => FixOutcome::succeeded(self.spec(), req, "done"),
                (false, _) => FixOutcome::failed(self.spec(), req, "the bucket is gone"),
            })
        }
    }

    async fn run_scripted(busy_turns: usize, last: FixStatus, options: RunOptions<'_>) -> (Execution, usize) {
        let fix = Arc::new(Scripted { busy_turns, last, calls: AtomicUsize::new(0) });
        let ex = run_fix(&s3_document(), fix.clone(), options).await;
        (ex, fix.calls.load(Ordering::SeqCst))
    }

    async fn run_fix(doc: &Document, fix: Arc<dyn Fix>, options: RunOptions<'_>) -> Execution {
        let t = Template::embedded().unwrap();
        let (remediation, _) = t.remediation_for_worker("fix-s3-enable-default-encryption").unwrap();
        let params = doc.parameters_for(&remediation.execution_parameters("my-bucket")).unwrap();
        let sdk = offline_sdk();
        let runner = Arc::new(FixRunner::new(fix, &sdk, None));
        let worker = |binary: &str| (binary == "fix-s3-enable-default-encryption").then(|| runner.clone());
        doc.run(&params, "exec-1", &worker, &options).await
    }

    fn s3_document() -> Document {
        Template::embedded().unwrap().remediation_for_worker("fix-s3-enable-default-encryption").unwrap().1
    }

    fn step_mut<'a>(content: &'a mut Json, name: &str) -> &'a mut Json {
        content["mainSteps"].as_array_mut().unwrap().iter_mut().find(|s| s["name"] == name).unwrap()
    }

    /// A worker whose Lambda handler panics: Lambda answers with its error object.
    struct Crashing;

    #[atrest::async_trait]
    impl Fix for Crashing {
        fn spec(&self) -> &'static FixSpec {
            fix_s3_enable_default_encryption::S3EnableDefaultEncryption.spec()
        }
        async fn reconcile(&self, _ctx: &FixContext, _req: &FixRequest) -> atrest::Result<FixOutcome> {
            panic!("index out of bounds: the len is 0 but the index is 0")
        }
    }

    /// A worker crash or timeout is not a failed Invoke step: the Payload is Lambda's error object,
    /// which the document reads as WorkerError and ends Failed on, after one turn, naming it.
    #[tokio::test]
    async fn a_crashing_worker_ends_the_run_failed_naming_the_error() {
        let ex = run_fix(&s3_document(), Arc::new(Crashing), RunOptions::immediate()).await;
        assert_eq!(ex.status, "Failed", "{ex:?}");
        assert_eq!(ex.steps, ["Invoke", "Answer", "Decide", "Fail"]);
        assert_eq!(ex.outputs.get("Answer.Status").map(String::as_str), Some("WorkerError"));
        let message = ex.failure_message.unwrap();
        assert!(message.contains("my-bucket") && message.contains("worker status: WorkerError"), "{message}");
        assert!(message.contains("(Panic): index out of bounds"), "{message}");
    }

    /// aws:invokeLambdaFunction's Payload output is a string (the JSON of the function's result)
    /// and StatusCode an integer, as AWS documents them; nothing else is made up.
    #[tokio::test]
    async fn the_invoke_payload_is_the_json_string_of_the_answer() {
        let mut doc = s3_document();
        doc.content["outputs"] = json!(["Invoke.Payload", "Invoke.StatusCode", "Answer.Status"]);
        doc.check().unwrap();
        let fix = Arc::new(Scripted { busy_turns: 0, last: FixStatus::Succeeded, calls: AtomicUsize::new(0) });
        let ex = run_fix(&doc, fix, RunOptions::immediate()).await;
        assert!(ex.succeeded(), "{ex:?}");
        let payload = &ex.outputs["Invoke.Payload"];
        let answer: Json = serde_json::from_str(payload).unwrap();
        assert_eq!((answer["Status"].as_str(), answer["Message"].as_str()), (Some("Succeeded"), Some("done")));
        assert_eq!(ex.outputs["Invoke.StatusCode"], "200");
        assert_eq!(ex.outputs["Answer.Status"], "Succeeded");
    }

    /// What the runner does not model is refused when the document is loaded, before any worker
    /// runs: each of these documents would otherwise run differently here than in an account.
    #[tokio::test]
    async fn constructs_the_runner_does_not_model_are_refused_at_load() {
        type Mutation = fn(&mut Json);
        let cases: &[(&str, Mutation, &str)] = &[
            (
                "a selector inside the Lambda Payload string",
                |c| step_mut(c, "Invoke")["outputs"] = json!([{"Name": "Status", "Selector": "$.Payload.Status", "Type": "String"}]),
                "Payload is a string",
            ),
            ("an action", |c| step_mut(c, "Succeeded")["action"] = json!("aws:approve"), "aws:approve is not modelled"),
            (
                "a choice operator",
                |c| {
                    let choice = &mut step_mut(c, "Decide")["inputs"]["Choices"][0];
                    let expected = choice.as_object_mut().unwrap().remove("StringEquals").unwrap();
                    choice["NumericEquals"] = expected;
                },
                "NumericEquals is not modelled",
            ),
            (
                "an output present only when the function failed",
                |c| step_mut(c, "Fail")["inputs"]["InputPayload"]["Status"] = json!("{{ Invoke.FunctionError }}"),
                "Invoke.FunctionError",
            ),
            ("a global variable", |c| step_mut(c, "Fail")["inputs"]["InputPayload"]["Status"] = json!("{{ global:DATE }}"), "global:DATE"),
            (
                "a parameter-store reference",
                |c| step_mut(c, "Fail")["inputs"]["InputPayload"]["Status"] = json!("{{ssm:/a/b}}"),
                "does not model",
            ),
            (
                "an edited script",
                |c| {
                    let script = step_mut(c, "Answer")["inputs"]["Script"].as_str().unwrap().replace("Unreadable", "Unknown");
                    step_mut(c, "Answer")["inputs"]["Script"] = json!(script);
                },
                "not one the runner knows",
            ),
            ("onFailure Continue", |c| step_mut(c, "Invoke")["onFailure"] = json!("Continue"), "onFailure"),
            ("a timeout over the action's cap", |c| step_mut(c, "Invoke")["timeoutSeconds"] = json!(301), "outside 1..=300"),
            ("a step property", |c| step_mut(c, "Invoke")["isCritical"] = json!(false), "isCritical is not modelled"),
            ("a missing next step", |c| step_mut(c, "Wait")["nextStep"] = json!("Nowhere"), "no step named Nowhere"),
            ("a sleep of seven full days", |c| step_mut(c, "Wait")["inputs"]["Duration"] = json!("P7D"), "604799"),
            ("an undeclared document output", |c| c["outputs"] = json!(["Answer.Nothing"]), "Answer.Nothing"),
            ("an asynchronous invocation", |c| step_mut(c, "Invoke")["inputs"]["InvocationType"] = json!("Event"), "RequestResponse"),
        ];
        assert_eq!(s3_document().check(), Ok(()));
        for (what, mutate, expected) in cases {
            let mut doc = s3_document();
            mutate(&mut doc.content);
            let refused = doc.check().expect_err(what);
            assert!(refused.contains(expected), "{what}: {refused}");
            // A run of such a document fails before calling the worker.
            let fix = Arc::new(Scripted { busy_turns: 0, last: FixStatus::Succeeded, calls: AtomicUsize::new(0) });
            let ex = run_fix(&doc, fix.clone(), RunOptions::immediate()).await;
            assert_eq!((ex.status.as_str(), fix.calls.load(Ordering::SeqCst)), ("Failed", 0), "{what}");
        }
    }

    /// The documents as they were (Status and Message selected inside the Payload string) are
    /// refused: in an account they would take Fail after the first turn.
    #[test]
    fn a_template_selecting_inside_the_payload_is_refused() {
        let old = TEMPLATE_YAML.replace(
            "            nextStep: Answer\n",
            "            outputs:\n              - Name: Status\n                Selector: $.Payload.Status\n                Type: String\n            nextStep: Answer\n",
        );
        assert_ne!(old, TEMPLATE_YAML);
        let t = Template::parse(&old).unwrap();
        let refused = t.remediations().unwrap().iter().map(|r| t.document(&r.document_logical_id).unwrap_err()).collect::<Vec<_>>();
        assert!(refused.iter().all(|e| e.contains("Payload is a string")), "{refused:?}");
    }

    /// An SDK configuration with no endpoint or credentials: the scripted worker never calls AWS.
    fn offline_sdk() -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build()
    }

    #[tokio::test]
    async fn the_document_loops_until_the_worker_succeeds() {
        let (ex, calls) = run_scripted(3, FixStatus::Succeeded, RunOptions::immediate()).await;
        assert!(ex.succeeded(), "{ex:?}");
        assert_eq!(calls, 4);
        assert_eq!(ex.worker_outcomes.len(), 4);
        assert_eq!(ex.outputs.get("Answer.Status").map(String::as_str), Some("Succeeded"));
        assert_eq!(ex.outputs.get("Answer.Message").map(String::as_str), Some("done"));
        assert_eq!(ex.steps.iter().filter(|s| *s == "Invoke").count(), 4, "{:?}", ex.steps);
        assert_eq!(&ex.steps[..4], ["Invoke", "Answer", "Decide", "Wait"], "the Answer step reads each turn's Payload");
    }

    #[tokio::test]
    async fn a_failed_worker_fails_the_run_with_its_message() {
        let (ex, calls) = run_scripted(1, FixStatus::Failed, RunOptions::immediate()).await;
        assert_eq!(ex.status, "Failed");
        assert_eq!(calls, 2);
        let message = ex.failure_message.unwrap();
        assert!(message.contains("the bucket is gone") && message.contains("my-bucket"), "{message}");
    }

    #[tokio::test]
    async fn a_run_gives_up_after_max_turns_and_says_it_can_resume() {
        let (ex, calls) =
            run_scripted(100, FixStatus::Succeeded, RunOptions { max_turns: 5, sleep: Sleep::Fixed(Duration::ZERO), on_progress: None })
                .await;
        assert_eq!(ex.status, "Failed");
        assert_eq!(calls, 5);
        assert!(ex.failure_message.unwrap().contains("run it again to resume"));
    }

    #[tokio::test(start_paused = true)]
    async fn documented_sleeps_are_slept() {
        let started = tokio::time::Instant::now();
        let heard = std::sync::Mutex::new(Vec::new());
        let listen = |p: Progress<'_>| {
            heard.lock().unwrap().push(match p {
                Progress::Turn { number, outcome } => format!("turn {number}: {:?}", outcome.status),
                Progress::Waiting(d) => format!("wait {}s", d.as_secs()),
            })
        };
        let options = RunOptions { max_turns: 10, sleep: Sleep::AsDocumented, on_progress: Some(&listen) };
        let (ex, _) = run_scripted(2, FixStatus::Succeeded, options).await;
        assert!(ex.succeeded());
        assert_eq!(
            heard.into_inner().unwrap(),
            // The last wait is the document's 1-second `Succeeded` step, which names the outcome.
            ["turn 1: InProgress", "wait 30s", "turn 2: InProgress", "wait 30s", "turn 3: Succeeded", "wait 1s"],
            "progress is reported turn by turn"
        );
        // Two waits of the document's 30 seconds and its 1-second Succeeded step, on the paused
        // test clock.
        assert_eq!(started.elapsed().as_secs(), 61);
    }
}
