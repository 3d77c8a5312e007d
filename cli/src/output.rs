//! What commands print: text or one JSON object, warnings on stderr, and
//! progress shown only to a person at a terminal.

use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

/// Text or JSON output, and progress bars that stay quiet under --json.
pub struct Output {
    pub json: bool,
}

impl Output {
    /// A progress bar drawn with `template`, or a hidden one when the output
    /// is JSON or stderr is not a terminal.
    pub fn progress(&self, template: &str, len: Option<u64>) -> ProgressBar {
        if self.json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return ProgressBar::hidden();
        }
        let bar = match len {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    }

    /// Runs one step under a spinner; returns its result and how long it took.
    pub fn step<T>(&self, msg: &str, f: impl FnOnce() -> Result<T>) -> Result<(T, Duration)> {
        let bar = self.progress("{spinner} {msg} {elapsed}", None);
        bar.set_message(msg.to_string());
        let start = Instant::now();
        let r = f();
        bar.finish_and_clear();
        r.map(|v| (v, start.elapsed()))
    }

    pub fn emit(&self, value: serde_json::Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", text());
        }
    }

    pub fn warn(&self, msg: &str) {
        eprintln!("warning: {msg}");
    }
}
