//! A fault-injecting HTTP/1.1 proxy between the SDK and the local AWS stand-in.
//!
//! Loopback only, deterministic by seed, bounded. moto answers every request with
//! `Connection: close`, so framing is simple: read one request (head + `Content-Length` or
//! chunked body), decide its fate, forward it on a fresh upstream connection, read the response
//! to EOF, pass it back, close.
//!
//! Fault classes, each in the wire format the calling SDK parses for that protocol:
//! - `Throttle`: S3 `SlowDown` (503 XML), EC2 `RequestLimitExceeded` (503 EC2 XML), query
//!   APIs `Throttling` (400 `ErrorResponse`), JSON APIs `ThrottlingException` (400 `__type`);
//! - `ServerError` (500) and `Unavailable` (503) in the same formats;
//! - `Reset`: the request is read, never forwarded, and the connection is reset;
//! - `Slow`: the request is held (never forwarded) longer than the SDK's attempt timeout;
//! - `DropResponse`: the request IS forwarded and performed, the response is thrown away and the
//!   connection reset, so the SDK retries a call that already succeeded.
//!
//! Decisions are drawn from a SplitMix64 stream seeded per run, two draws per request in arrival
//! order, so a sequential worker sees the same schedule for the same seed. `max_faults` bounds
//! the faults per run, so every run terminates. A `Kill` stops the "process": after call N the
//! proxy forwards nothing more (optionally performing call N+1 first), resets every later
//! connection and signals `killed()`, which the harness races against the worker to drop it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultClass {
    Throttle,
    ServerError,
    Unavailable,
    Reset,
    Slow,
    DropResponse,
}

pub const ALL_FAULTS: &[FaultClass] = &[
    FaultClass::Throttle,
    FaultClass::ServerError,
    FaultClass::Unavailable,
    FaultClass::Reset,
    FaultClass::Slow,
    FaultClass::DropResponse,
];

impl FaultClass {
    pub fn name(self) -> &'static str {
        match self {
            FaultClass::Throttle => "throttle",
            FaultClass::ServerError => "500",
            FaultClass::Unavailable => "503",
            FaultClass::Reset => "reset",
            FaultClass::Slow => "slow",
            FaultClass::DropResponse => "drop-response",
        }
    }
}

/// Stop the worker around call `after_calls + 1` (calls are HTTP requests, retries included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    /// Calls answered normally before the kill.
    pub after_calls: u64,
    /// Perform call `after_calls + 1` upstream before dying (a crash after a mutation landed),
    /// rather than dying before it was sent.
    pub perform_last: bool,
}

#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub seed: u64,
    /// Chance, in percent, that a request gets a fault (while faults remain).
    pub rate_percent: u64,
    /// Faults per run at most.
    pub max_faults: u32,
    pub classes: Vec<FaultClass>,
    /// How long a `Slow` request is held: longer than the SDK attempt timeout.
    pub slow_for: Duration,
    /// Faults at given call numbers (1-based), on top of the random ones.
    pub at: Vec<(u64, FaultClass)>,
    /// Faults at the n-th call (1-based) of a given `service:operation` (targeted sweeps).
    /// Aiming at the operation rather than a global call number keeps the aim true when a run
    /// makes an extra call, e.g. an SDK retry after a slow attempt.
    pub at_operation: Vec<(String, u64, FaultClass)>,
    pub kill: Option<Kill>,
}

impl FaultPlan {
    /// No faults: a transparent proxy that counts and logs calls.
    pub fn clean() -> Self {
        FaultPlan {
            seed: 0,
            rate_percent: 0,
            max_faults: 0,
            classes: Vec::new(),
            slow_for: Duration::ZERO,
            at: Vec::new(),
            at_operation: Vec::new(),
            kill: None,
        }
    }

    pub fn random(seed: u64, rate_percent: u64, max_faults: u32, classes: &[FaultClass], slow_for: Duration) -> Self {
        FaultPlan {
            seed,
            rate_percent,
            max_faults,
            classes: classes.to_vec(),
            slow_for,
            at: Vec::new(),
            at_operation: Vec::new(),
            kill: None,
        }
    }

    /// Exactly one fault, at the `occurrence`-th call (1-based) of `operation` (`service:Operation`).
    pub fn single(operation: &str, occurrence: u64, class: FaultClass, slow_for: Duration) -> Self {
        FaultPlan { at_operation: vec![(operation.to_string(), occurrence, class)], slow_for, ..Self::clean() }
    }

    pub fn kill(kill: Kill) -> Self {
        FaultPlan { kill: Some(kill), ..Self::clean() }
    }
}

/// The wire protocol of a request, as far as error formats go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// S3's REST-XML.
    RestXml,
    /// EC2's query dialect (its own error envelope).
    Ec2Query,
    /// awsQuery: RDS, SNS, STS.
    Query,
    /// awsJson 1.0/1.1: Config, KMS, SSM.
    Json,
}

/// One request the proxy saw, and what it did with it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// 1-based call number.
    pub n: u64,
    pub service: String,
    /// `Action` / `X-Amz-Target` operation, or `METHOD ?subresource` for S3.
    pub operation: String,
    pub protocol: Protocol,
    pub mutating: bool,
    pub fault: Option<FaultClass>,
    /// Whether the request reached the stand-in.
    pub performed: bool,
    /// Set when this call triggered the kill.
    pub kill: bool,
}

/// SplitMix64: tiny, seedable, good enough to spread faults; no global randomness.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

struct State {
    plan: FaultPlan,
    rng: Rng,
    faults: u32,
    calls: u64,
    /// Calls so far per `service:operation`.
    calls_by_operation: std::collections::HashMap<String, u64>,
    killed: bool,
    log: Vec<Exchange>,
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Forward,
    Fault(FaultClass),
    /// The process is dead: reset without forwarding.
    Dead,
    /// The kill: perform (or not), then reset.
    Kill {
        perform: bool,
    },
}

struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    killed_tx: watch::Sender<bool>,
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    killed_rx: watch::Receiver<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str, plan: FaultPlan) -> FaultProxy {
        let host = upstream.strip_prefix("http://").unwrap_or(upstream).trim_end_matches('/');
        let upstream: SocketAddr = tokio::net::lookup_host(host)
            .await
            .unwrap_or_else(|e| panic!("upstream {host}: {e}"))
            .find(|a| a.ip().is_loopback())
            .unwrap_or_else(|| panic!("the fault proxy only fronts a loopback stand-in, not {host}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fault proxy on loopback");
        let addr = listener.local_addr().expect("proxy address");
        let (killed_tx, killed_rx) = watch::channel(false);
        let rng = Rng::new(plan.seed);
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State {
                plan,
                rng,
                faults: 0,
                calls: 0,
                calls_by_operation: Default::default(),
                killed: false,
                log: Vec::new(),
            }),
            killed_tx,
        });
        let accept_shared = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = accept_shared.clone();
                tokio::spawn(async move {
                    // A client that never finishes its request must not pin a task forever.
                    let _ = tokio::time::timeout(Duration::from_secs(60), serve(shared, stream)).await;
                });
            }
        });
        FaultProxy { addr, shared, killed_rx, accept }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request seen so far, in arrival order.
    pub fn log(&self) -> Vec<Exchange> {
        self.shared.state.lock().unwrap().log.clone()
    }

    pub fn calls(&self) -> u64 {
        self.shared.state.lock().unwrap().calls
    }

    pub fn faults_injected(&self) -> u32 {
        self.shared.state.lock().unwrap().faults
    }

    pub fn is_killed(&self) -> bool {
        *self.killed_rx.borrow()
    }

    /// Resolves once the plan's kill has triggered (never, without one).
    pub async fn killed(&self) {
        let mut rx = self.killed_rx.clone();
        let _ = rx.wait_for(|k| *k).await;
        // Without a kill the sender lives as long as the proxy: pend forever.
        if !*rx.borrow() {
            std::future::pending::<()>().await;
        }
    }
}

/// The parsed parts of a request the proxy cares about.
struct Request {
    raw: Vec<u8>,
    service: String,
    operation: String,
    protocol: Protocol,
    mutating: bool,
}

async fn serve(shared: Arc<Shared>, mut client: TcpStream) {
    let Some(request) = read_request(&mut client).await else { return };
    let action = decide(&shared, &request);
    handle(&shared, client, &request, action).await;
    // Signalled only once the killed call has been performed (or refused), so whoever resumes
    // finds the state a real crash at that point would leave.
    if matches!(action, Action::Kill { .. }) {
        shared.killed_tx.send_replace(true);
    }
}

async fn handle(shared: &Shared, mut client: TcpStream, request: &Request, action: Action) {
    match action {
        Action::Forward => {
            if let Some(response) = forward(shared.upstream, &request.raw).await {
                let _ = client.write_all(&response).await;
                let _ = client.shutdown().await;
            } else {
                let _ = client.write_all(&error_response(Protocol::RestXml, 502, "BadGateway", "stand-in unreachable")).await;
            }
        }
        Action::Fault(FaultClass::Throttle) => {
            let (status, code) = match request.protocol {
                Protocol::RestXml => (503, "SlowDown"),
                Protocol::Ec2Query => (503, "RequestLimitExceeded"),
                Protocol::Query => (400, "Throttling"),
                Protocol::Json => (400, "ThrottlingException"),
            };
            let _ = client.write_all(&error_response(request.protocol, status, code, "Rate exceeded (injected fault)")).await;
            let _ = client.shutdown().await;
        }
        Action::Fault(FaultClass::ServerError) => {
            let code = match request.protocol {
                Protocol::RestXml | Protocol::Ec2Query => "InternalError",
                Protocol::Query | Protocol::Json => "InternalFailure",
            };
            let _ = client.write_all(&error_response(request.protocol, 500, code, "injected fault")).await;
            let _ = client.shutdown().await;
        }
        Action::Fault(FaultClass::Unavailable) => {
            let _ = client.write_all(&error_response(request.protocol, 503, "ServiceUnavailable", "injected fault")).await;
            let _ = client.shutdown().await;
        }
        Action::Fault(FaultClass::Reset) | Action::Dead | Action::Kill { perform: false } => reset(client),
        Action::Fault(FaultClass::Slow) => {
            let hold = shared.state.lock().unwrap().plan.slow_for;
            tokio::time::sleep(hold).await;
            reset(client);
        }
        Action::Fault(FaultClass::DropResponse) | Action::Kill { perform: true } => {
            let _ = forward(shared.upstream, &request.raw).await;
            reset(client);
        }
    }
}

fn reset(client: TcpStream) {
    // SO_LINGER 0: close() sends RST, which the SDK sees as a connection reset.
    let _ = client.set_zero_linger();
    drop(client);
}

fn decide(shared: &Shared, request: &Request) -> Action {
    let mut st = shared.state.lock().unwrap();
    st.calls += 1;
    let n = st.calls;
    let operation_key = format!("{}:{}", request.service, request.operation);
    let occurrence = {
        let count = st.calls_by_operation.entry(operation_key.clone()).or_default();
        *count += 1;
        *count
    };
    // Draw the same amount of randomness for every request, so one decision never shifts the next.
    let roll = st.rng.below(100);
    let pick = st.rng.next_u64();
    let mut fault = None;
    let action =
        if st.killed {
            Action::Dead
        } else if let Some(kill) = st.plan.kill.filter(|k| n > k.after_calls) {
            st.killed = true;
            Action::Kill { perform: kill.perform_last }
        } else if let Some(class) = st.plan.at.iter().find(|(at, _)| *at == n).map(|(_, class)| *class).or_else(|| {
            st.plan.at_operation.iter().find(|(op, nth, _)| *op == operation_key && *nth == occurrence).map(|(_, _, class)| *class)
        }) {
            st.faults += 1;
            fault = Some(class);
            Action::Fault(class)
        } else if st.faults < st.plan.max_faults && roll < st.plan.rate_percent && !st.plan.classes.is_empty() {
            let classes = &st.plan.classes;
            // A lost response to a mutation is the fault reconcilers get wrong: favour it there.
            let class = if request.mutating && pick & 1 == 0 && classes.contains(&FaultClass::DropResponse) {
                FaultClass::DropResponse
            } else {
                classes[((pick >> 1) % classes.len() as u64) as usize]
            };
            st.faults += 1;
            fault = Some(class);
            Action::Fault(class)
        } else {
            Action::Forward
        };
    let performed = matches!(action, Action::Forward | Action::Fault(FaultClass::DropResponse) | Action::Kill { perform: true });
    st.log.push(Exchange {
        n,
        service: request.service.clone(),
        operation: request.operation.clone(),
        protocol: request.protocol,
        mutating: request.mutating,
        fault,
        performed,
        kill: matches!(action, Action::Kill { .. }),
    });
    action
}

async fn forward(upstream: SocketAddr, raw: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await.ok()?;
    stream.write_all(raw).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    Some(response)
}

const MAX_HEAD: usize = 64 * 1024;

/// Reads one request: head, then a `Content-Length` or chunked body. Answers `Expect:
/// 100-continue` itself and strips it, since the stand-in gets the whole request at once.
async fn read_request(client: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 8192];
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_string();
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let expect_continue = header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expect_continue {
        client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.ok()?;
    }
    let mut body = buf[head_end..].to_vec();
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < len {
            let mut chunk = vec![0u8; (len - body.len()).min(64 * 1024)];
            let n = client.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(len);
    } else if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        while !chunked_complete(&body) {
            let mut chunk = [0u8; 8192];
            let n = client.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }

    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or("GET").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let service = header("authorization")
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|cred| cred.split('/').nth(3))
        .unwrap_or("s3")
        .to_string();
    let content_type = header("content-type").unwrap_or("").to_ascii_lowercase();
    let (protocol, operation) = if let Some(target) = header("x-amz-target") {
        (Protocol::Json, target.rsplit('.').next().unwrap_or(target).to_string())
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let text = String::from_utf8_lossy(&body);
        let action = text.split('&').find_map(|kv| kv.strip_prefix("Action=")).unwrap_or("Unknown").to_string();
        (if service == "ec2" { Protocol::Ec2Query } else { Protocol::Query }, action)
    } else {
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let sub = query.split('&').map(|kv| kv.split('=').next().unwrap_or("")).find(|k| !k.is_empty() && !k.starts_with("x-id"));
        let path_depth = target.split('?').next().unwrap_or("/").trim_matches('/').split('/').filter(|s| !s.is_empty()).count();
        let what = match sub {
            Some(sub) => format!("?{sub}"),
            None if path_depth >= 2 => "object".into(),
            None if path_depth == 1 => "bucket".into(),
            None => "service".into(),
        };
        (Protocol::RestXml, format!("{method} {what}"))
    };
    let mutating = match protocol {
        Protocol::RestXml => !matches!(method.as_str(), "GET" | "HEAD"),
        _ => !["Describe", "Get", "List", "Head"].iter().any(|p| operation.starts_with(p)),
    };

    let mut raw = Vec::with_capacity(head_end + body.len());
    if expect_continue {
        for line in head.split("\r\n") {
            if !line.to_ascii_lowercase().starts_with("expect:") && !line.is_empty() {
                raw.extend_from_slice(line.as_bytes());
                raw.extend_from_slice(b"\r\n");
            }
        }
        raw.extend_from_slice(b"\r\n");
    } else {
        raw.extend_from_slice(&buf[..head_end]);
    }
    raw.extend_from_slice(&body);
    Some(Request { raw, service, operation, protocol, mutating })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether `body` holds a complete chunked encoding (last chunk and trailers included).
fn chunked_complete(body: &[u8]) -> bool {
    let mut pos = 0;
    loop {
        let Some(line_end) = find(&body[pos..], b"\r\n") else { return false };
        let size_text = String::from_utf8_lossy(&body[pos..pos + line_end]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else { return false };
        pos += line_end + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(end) = find(&body[pos..], b"\r\n") else { return false };
                if end == 0 {
                    return true;
                }
                pos += end + 2;
            }
        }
        pos += size + 2;
        if pos > body.len() {
            return false;
        }
    }
}

/// An error response as the real service would send it for this protocol.
pub fn error_response(protocol: Protocol, status: u16, code: &str, message: &str) -> Vec<u8> {
    let request_id = "00000000-fault-0000-0000-000000000000";
    let (content_type, body, extra) = match protocol {
        Protocol::RestXml => (
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
            ),
            String::new(),
        ),
        Protocol::Ec2Query => (
            "text/xml;charset=UTF-8",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
            ),
            String::new(),
        ),
        Protocol::Query => {
            let kind = if status >= 500 { "Receiver" } else { "Sender" };
            (
                "text/xml",
                format!(
                    "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
                ),
                String::new(),
            )
        }
        Protocol::Json => (
            "application/x-amz-json-1.1",
            format!("{{\"__type\":\"{code}\",\"message\":\"{message}\"}}"),
            format!("x-amzn-ErrorType: {code}\r\n"),
        ),
    };
    let reason = match status {
        400 => "Bad Request",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nx-amzn-RequestId: {request_id}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_a_function_of_the_seed() {
        let draw = |seed| {
            let mut r = Rng::new(seed);
            (0..8).map(|_| r.below(100)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn chunked_bodies_are_framed() {
        assert!(chunked_complete(b"3\r\nabc\r\n0\r\n\r\n"));
        assert!(chunked_complete(b"3;ext=1\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n"));
        assert!(!chunked_complete(b"3\r\nabc\r\n0\r\n"));
        assert!(!chunked_complete(b"3\r\nab"));
    }

    #[test]
    fn json_errors_carry_the_type() {
        let r = String::from_utf8(error_response(Protocol::Json, 400, "ThrottlingException", "x")).unwrap();
        assert!(r.starts_with("HTTP/1.1 400") && r.contains("\"__type\":\"ThrottlingException\""), "{r}");
    }
}
