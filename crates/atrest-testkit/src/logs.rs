//! Captures what a worker logs, in the JSON format the Lambdas use (`atrest::telemetry::
//! init_lambda`), so tests can read it back and scan it.
//!
//! The capture is installed as the thread's default subscriber: run the code under test on a
//! current-thread runtime (`#[tokio::test]`'s default) so every task logs into it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

pub struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> Self::Writer {
        CaptureWriter(self.0.clone())
    }
}

/// A JSON subscriber configured like the Lambdas', at `filter` (e.g. `"info"`, `"trace"`),
/// and the buffer it writes to. Install it with `tracing::dispatcher::set_default`.
pub fn json_capture(filter: &str) -> (tracing::Dispatch, CapturedLogs) {
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(atrest::telemetry::filter(filter))
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_writer(logs.clone())
        .finish();
    (tracing::Dispatch::new(subscriber), logs)
}

/// Installs [`json_capture`] as this thread's default subscriber until the guard is dropped.
pub fn capture_on_this_thread(filter: &str) -> (tracing::dispatcher::DefaultGuard, CapturedLogs) {
    let (dispatch, logs) = json_capture(filter);
    (tracing::dispatcher::set_default(&dispatch), logs)
}
