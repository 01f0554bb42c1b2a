//! Automation documents: loading them from the template, and the load-time check that refuses
//! whatever the runner does not model.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::Value as Json;

use crate::Error;
use crate::run::parse_sleep_duration;
use crate::scripts::known_script;
use crate::template::{Template, as_str};

/// `{{ Parameter }}`, `{{ Step.Output }}` or `{{ automation:EXECUTION_ID }}` in a document.
pub(crate) static DOCUMENT_VARIABLE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"\{\{\s*([A-Za-z0-9_.:]+)\s*\}\}").expect("static regex"));

pub(crate) const INVOKE_LAMBDA: &str = "aws:invokeLambdaFunction";
pub(crate) const EXECUTE_SCRIPT: &str = "aws:executeScript";
pub(crate) const BRANCH: &str = "aws:branch";
pub(crate) const SLEEP: &str = "aws:sleep";
pub(crate) const UPDATE_VARIABLE: &str = "aws:updateVariable";
/// How a runbook variable is named in `{{ }}` and in `aws:updateVariable`'s `Name`.
pub(crate) const VARIABLE_PREFIX: &str = "variable:";
/// "String lengths can be a minimum length of 1 and a maximum length of 512" (aws:updateVariable).
pub(crate) const VARIABLE_STRING_CHARS: std::ops::RangeInclusive<usize> = 1..=512;

/// One Automation document's content, resolved (placeholder ARNs for `!GetAtt`).
#[derive(Debug, Clone)]
pub struct Document {
    pub logical_id: String,
    pub content: Json,
    /// Placeholder Lambda ARN -> the function's `BuildProperties.Binary` (e.g. `fix-ebs-encrypt-volumes`).
    pub functions: BTreeMap<String, String>,
}

impl Template {
    /// An Automation document's content, resolved.
    pub fn document(&self, logical_id: &str) -> Result<Document, Error> {
        let document = self.automation_document(logical_id).map_err(Error::Template)?;
        document.check_content().map_err(|e| Error::NotModelled(format!("{logical_id}: {e}")))?;
        Ok(document)
    }

    fn automation_document(&self, logical_id: &str) -> Result<Document, String> {
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

impl Document {
    /// The worker binaries (`fix-...`) the document's `aws:invokeLambdaFunction` steps call.
    pub fn invoked_workers(&self) -> Vec<String> {
        let steps = self.content["mainSteps"].as_array().into_iter().flatten();
        steps
            .filter(|s| s["action"].as_str() == Some("aws:invokeLambdaFunction"))
            .filter_map(|s| self.functions.get(s["inputs"]["FunctionName"].as_str()?).cloned())
            .collect()
    }

    pub(crate) fn steps(&self) -> Result<&Vec<Json>, String> {
        self.content["mainSteps"].as_array().ok_or_else(|| "no mainSteps".to_string())
    }

    /// Refuses what the runner does not model, as SSM refuses an invalid document when it is
    /// created: unknown top-level keys, step properties, actions, inputs, operators, selectors,
    /// scripts and variables, and steps that name missing steps. A document that passes runs
    /// exactly as interpreted here.
    pub fn check(&self) -> Result<(), Error> {
        self.check_content().map_err(Error::NotModelled)
    }

    fn check_content(&self) -> Result<(), String> {
        let c = &self.content;
        let top = c.as_object().ok_or("the content is not a map")?;
        only_keys("the document", top, &["schemaVersion", "description", "assumeRole", "variables", "parameters", "outputs", "mainSteps"])?;
        let variables = self.variables()?;
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
                UPDATE_VARIABLE => {
                    only_keys(&format!("step {name} inputs"), inputs, &["Name", "Value"])?;
                    let variable = inputs
                        .get("Name")
                        .and_then(Json::as_str)
                        .and_then(|n| n.strip_prefix(VARIABLE_PREFIX))
                        .ok_or_else(|| format!("{name}: Name must be variable:<name>"))?;
                    if !variables.contains_key(variable) {
                        return Err(format!("{name}: no runbook variable {variable}"));
                    }
                    if !inputs.get("Value").is_some_and(Json::is_string) {
                        return Err(format!("{name}: only String variables are modelled, so Value must be a string"));
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
                _ if var.starts_with(VARIABLE_PREFIX) => variables.contains_key(&var[VARIABLE_PREFIX.len()..]),
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
}

impl Document {
    /// The runbook variables and their defaults. Only String variables are modelled, with the
    /// documented length of 1 to 512 characters.
    pub(crate) fn variables(&self) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        let Some(declared) = self.content.get("variables") else { return Ok(out) };
        let declared = declared.as_object().ok_or("variables is not a map")?;
        for (name, decl) in declared {
            let decl = decl.as_object().ok_or_else(|| format!("variable {name} is not a map"))?;
            only_keys(&format!("variable {name}"), decl, &["type", "default", "description"])?;
            if decl.get("type").and_then(Json::as_str) != Some("String") {
                return Err(format!("variable {name}: only String variables are modelled"));
            }
            let default = decl.get("default").and_then(Json::as_str).ok_or_else(|| format!("variable {name}: a String default"))?;
            if !VARIABLE_STRING_CHARS.contains(&default.chars().count()) {
                return Err(format!("variable {name}: a String variable holds 1 to 512 characters"));
            }
            out.insert(name.clone(), default.to_string());
        }
        Ok(out)
    }
}

/// `(Name, Selector, Type)` of a declared step output (`Type` defaults to String).
pub(crate) fn declared_output<'a>(step: &str, o: &'a Json) -> Result<(&'a str, &'a str, &'a str), String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TEMPLATE_YAML;

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
        assert!(refused.iter().all(|e| matches!(e, Error::NotModelled(m) if m.contains("Payload is a string"))), "{refused:?}");
    }
}
