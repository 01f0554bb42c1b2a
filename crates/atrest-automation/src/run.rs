//! Executing a checked document: the steps' actions with their documented outputs, the worker
//! called in-process, sleeps, and the run's bounds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::Error;
use crate::document::{
    BRANCH, DOCUMENT_VARIABLE, Document, EXECUTE_SCRIPT, INVOKE_LAMBDA, SLEEP, UPDATE_VARIABLE, VARIABLE_PREFIX, VARIABLE_STRING_CHARS,
    declared_output,
};
use crate::scripts::known_script;

/// A run never executes more document steps than this per worker turn allowed, so a loop bug
/// fails instead of hanging.
const STEPS_PER_TURN: usize = 5;

/// The longest `aws:sleep`: "The maximum duration is 604799 seconds (7 days)".
pub const MAX_SLEEP_SECONDS: u64 = 604_799;

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
pub fn parse_sleep_duration(text: &str) -> Result<Duration, Error> {
    let bad = || Error::NotModelled(format!("aws:sleep Duration {text:?} is not an ISO 8601 duration such as PT30S"));
    let rest = text.strip_prefix('P').ok_or_else(bad)?;
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut seconds = 0u64;
    let mut add = |part: &str, units: &[(char, u64)]| -> Result<(), Error> {
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
        return Err(Error::NotModelled(format!("aws:sleep Duration {text} is over SSM's limit of {MAX_SLEEP_SECONDS} seconds")));
    }
    Ok(Duration::from_secs(seconds))
}

impl Document {
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
            Ok(()) => {
                self.interpret(parameters, execution_id, worker, options, &mut ex, &mut step_outputs).await.map_err(Error::StepFailed)
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => ex.status = "Success".into(),
            Err(error) => {
                ex.status = "Failed".into();
                ex.failure_message = Some(error.to_string());
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
        let mut variables = self.variables()?;
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
            let vars = |text: &str, outputs: &BTreeMap<String, String>, variables: &BTreeMap<String, String>| {
                substitute(text, parameters, execution_id, outputs, variables)
            };
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
                    let request = substitute_json(&inputs["InputPayload"], &|s| vars(s, outputs, &variables))?;
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
                        let variable =
                            vars(choice["Variable"].as_str().ok_or_else(|| format!("{name}: choice Variable"))?, outputs, &variables)?;
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
                    let documented = parse_sleep_duration(&vars(documented, outputs, &variables)?).map_err(|e| format!("{name}: {e}"))?;
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
                    let events = substitute_json(&inputs["InputPayload"], &|s| vars(s, outputs, &variables))?;
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
                UPDATE_VARIABLE => {
                    let variable = inputs["Name"].as_str().and_then(|n| n.strip_prefix(VARIABLE_PREFIX)).unwrap_or_default();
                    let value = vars(inputs["Value"].as_str().unwrap_or_default(), outputs, &variables)?;
                    // The step fails on a value the variable cannot hold, as SSM documents.
                    if !VARIABLE_STRING_CHARS.contains(&value.chars().count()) {
                        return Err(format!("{name}: variable {variable} holds 1 to 512 characters, not {}", value.chars().count()));
                    }
                    match variables.get_mut(variable) {
                        Some(slot) => *slot = value,
                        None => return Err(format!("{name}: no runbook variable {variable}")),
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

/// Replaces `{{ Param }}`, `{{ automation:EXECUTION_ID }}`, `{{ variable:Name }}` and
/// `{{ Step.Output }}`. An unknown variable is an error (SSM refuses such documents).
fn substitute(
    text: &str,
    parameters: &BTreeMap<String, String>,
    execution_id: &str,
    outputs: &BTreeMap<String, String>,
    variables: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut err = None;
    let out = DOCUMENT_VARIABLE.replace_all(text, |c: &regex::Captures| {
        let var = &c[1];
        let value = match var {
            "automation:EXECUTION_ID" => Some(execution_id.to_string()),
            _ if var.starts_with(VARIABLE_PREFIX) => variables.get(&var[VARIABLE_PREFIX.len()..]).cloned(),
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
    use crate::Template;

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
            assert!(parse_sleep_duration(text).unwrap_err().to_string().contains("604799"), "{text} should be refused");
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
        let (remediation, _) = t.remediation_for_rule("S3BucketServerSideEncryptionEnabledRule").unwrap();
        let params = doc.parameters_for(&remediation.execution_parameters("my-bucket")).unwrap();
        let sdk = offline_sdk();
        let runner = Arc::new(FixRunner::new(fix, &sdk, None));
        let worker = |binary: &str| (binary == "fix-s3-enable-default-encryption").then(|| runner.clone());
        doc.run(&params, "exec-1", &worker, &options).await
    }

    fn s3_document() -> Document {
        Template::embedded().unwrap().remediation_for_rule("S3BucketServerSideEncryptionEnabledRule").unwrap().1
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
            assert!(matches!(&refused, Error::NotModelled(m) if m.contains(expected)), "{what}: {refused}");
            // A run of such a document fails before calling the worker.
            let fix = Arc::new(Scripted { busy_turns: 0, last: FixStatus::Succeeded, calls: AtomicUsize::new(0) });
            let ex = run_fix(&doc, fix.clone(), RunOptions::immediate()).await;
            assert_eq!((ex.status.as_str(), fix.calls.load(Ordering::SeqCst)), ("Failed", 0), "{what}");
        }
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

    /// A long worker: each turn hands on how far it got, and records where it was asked to start.
    struct Resuming {
        started_from: std::sync::Mutex<Vec<Option<String>>>,
    }

    #[atrest::async_trait]
    impl Fix for Resuming {
        fn spec(&self) -> &'static FixSpec {
            &fix_s3_encrypt_existing_objects::SPEC
        }
        async fn reconcile(&self, _ctx: &FixContext, req: &FixRequest) -> atrest::Result<FixOutcome> {
            let mut seen = self.started_from.lock().unwrap();
            seen.push(req.resume.clone());
            Ok(match seen.len() {
                1 => FixOutcome::in_progress(self.spec(), req, "first keys done").with_resume("data/0100"),
                // A turn that made no progress (throttled) hands on where it was asked to start.
                2 => FixOutcome::in_progress(self.spec(), req, "throttled").with_resume("data/0100"),
                3 => FixOutcome::in_progress(self.spec(), req, "more done").with_resume(&"k".repeat(600)),
                _ => FixOutcome::succeeded(self.spec(), req, "done"),
            })
        }
    }

    #[tokio::test]
    async fn a_resumable_document_hands_each_turn_the_point_the_last_one_reached() {
        let t = Template::embedded().unwrap();
        let (remediation, doc) = t.remediation_for_rule("S3BucketObjectsEncryptedRule").unwrap();
        doc.check().unwrap();
        let params = doc.parameters_for(&remediation.execution_parameters("my-bucket")).unwrap();
        let fix = Arc::new(Resuming { started_from: Default::default() });
        let runner = Arc::new(FixRunner::new(fix.clone(), &offline_sdk(), None));
        let worker = |binary: &str| (binary == "fix-s3-encrypt-existing-objects").then(|| runner.clone());
        let ex = doc.run(&params, "exec-1", &worker, &RunOptions::immediate()).await;
        assert!(ex.succeeded(), "{ex:?}");
        let long: String = "k".repeat(atrest::remediation::RESUME_MAX_CHARS);
        assert_eq!(
            *fix.started_from.lock().unwrap(),
            [None, Some("data/0100".to_string()), Some("data/0100".to_string()), Some(long)],
            "the first turn starts from the first key, each later one where the last stopped"
        );
        assert_eq!(&ex.steps[..6], ["Invoke", "Answer", "Decide", "Wait", "Remember", "Invoke"], "{:?}", ex.steps);
        // Documents of short fixes carry nothing across turns.
        let (_, short) = t.remediation_for_rule("S3BucketServerSideEncryptionEnabledRule").unwrap();
        assert!(short.content.get("variables").is_none());
        assert!(!short.content.to_string().contains("aws:updateVariable") && !short.content.to_string().contains("{{ variable:"));
    }

    #[tokio::test]
    async fn variables_the_runner_cannot_hold_are_refused() {
        let t = Template::embedded().unwrap();
        let (_, doc) = t.remediation_for_rule("S3BucketObjectsEncryptedRule").unwrap();
        type Breakage = fn(&mut Json);
        let cases: [(&str, Breakage); 4] = [
            ("a non-String variable", |c| c["variables"]["Resume"]["type"] = json!("StringList")),
            ("an empty default", |c| c["variables"]["Resume"]["default"] = json!("")),
            ("an undeclared variable", |c| step_mut(c, "Remember")["inputs"]["Name"] = json!("variable:Other")),
            ("a reference to an undeclared variable", |c| {
                step_mut(c, "Invoke")["inputs"]["InputPayload"]["Resume"] = json!("{{ variable:Other }}")
            }),
        ];
        for (what, change) in cases {
            let mut broken = doc.clone();
            change(&mut broken.content);
            assert!(broken.check().is_err(), "{what} should be refused");
        }
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
