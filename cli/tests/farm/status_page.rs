//! The coordinator's status page in a real headless Chromium: it loads, its
//! figures are `zkfarm stats`' figures, its charts count what was served,
//! and a restarted coordinator shows the same history. A screenshot is
//! taken (kept in the test's temporary directory).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// Chromium as scripts/test.sh installs it (Debian's `chromium`).
fn chromium() -> String {
    std::env::var("ZKFARM_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Runs headless Chromium on `url` with `action` (`--dump-dom` or
/// `--screenshot=PATH`); returns its stdout.
fn headless(profile: &Path, url: &str, action: &str) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=900,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(action)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}): run scripts/test.sh, which installs chromium", chromium()));
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the element that follows `marker` in the DOM.
fn text_after(dom: &str, marker: &str) -> String {
    let at = dom.find(marker).unwrap_or_else(|| panic!("no {marker} in the page:\n{dom}"));
    let rest = &dom[at + marker.len()..];
    let start = rest.find('>').unwrap() + 1;
    rest[start..start + rest[start..].find('<').unwrap()].to_string()
}

/// The value of attribute `attr` on the element with id `id`.
fn attribute(dom: &str, id: &str, attr: &str) -> String {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the page"));
    let tag = &dom[dom[..at].rfind('<').unwrap()..at + dom[at..].find('>').unwrap()];
    let key = format!("{attr}=\"");
    let v = &tag[tag.find(&key).unwrap_or_else(|| panic!("no {attr} on #{id}: {tag}")) + key.len()..];
    v[..v.find('"').unwrap()].to_string()
}

/// The page's figures against `zkfarm stats --json`.
fn assert_matches_stats(dom: &str, stats: &Value) {
    for field in ["jobs", "queue_depth", "live_workers"] {
        assert_eq!(text_after(dom, &format!("id=\"{field}\"")), stats[field].to_string(), "{field}");
    }
    for tier in stats["tiers"].as_array().unwrap() {
        let row = format!("data-tier=\"{}\"", tier["tier"].as_str().unwrap());
        let cell = |field: &str| {
            let at = dom.find(&row).unwrap();
            text_after(&dom[at..], &format!("data-field=\"{field}\""))
        };
        assert_eq!(cell("count"), tier["count"].to_string(), "{row} count");
        assert_eq!(cell("failed"), tier["failed"].to_string(), "{row} failed");
        assert_eq!(cell("p50_ms"), format!("{:.1}", tier["p50_ms"].as_f64().unwrap()), "{row} p50");
        assert_eq!(cell("p95_ms"), format!("{:.1}", tier["p95_ms"].as_f64().unwrap()), "{row} p95");
        assert_eq!(cell("share_percent"), format!("{:.1}%", tier["share_percent"].as_f64().unwrap()), "{row} share");
    }
}

#[test]
fn the_status_page_shows_the_stats_and_keeps_its_history_across_a_restart() {
    let _g = serial();
    let home = tempfile::tempdir().unwrap();
    let mut coord = Coordinator::start(home.path(), "coordinator", &[]);
    let w = coord.worker("w1", &[]);
    wait_until("the worker to register", Duration::from_secs(30), || worker_id(&w).is_some());
    let job = coord.cli_json(&["submit", write_batch(home.path(), &["signed"; 6]).to_str().unwrap()]);
    let job = coord.wait_job(job["job_id"].as_str().unwrap(), Duration::from_secs(120));
    assert_eq!(job["state"], "done", "{job}");

    let url = format!("http://127.0.0.1:{}/", coord.metrics_port);
    let profile = home.path().join("chromium");
    // The gauges and live-worker count settle on the sweep; compare once
    // the page and `stats` agree on a quiet farm.
    let mut dom = String::new();
    wait_until("the page to match zkfarm stats", Duration::from_secs(20), || {
        dom = headless(&profile, &url, "--dump-dom");
        let stats = coord.cli_json(&["stats"]);
        std::panic::catch_unwind(|| assert_matches_stats(&dom, &stats)).is_ok()
    });
    assert_matches_stats(&dom, &coord.cli_json(&["stats"]));
    assert_eq!(attribute(&dom, "chart-hour", "data-total"), "6");
    assert_eq!(attribute(&dom, "chart-day", "data-total"), "6");

    let shot = home.path().join("status.png");
    headless(&profile, &url, &format!("--screenshot={}", shot.display()));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.len() > 1000 && png.starts_with(b"\x89PNG"), "a screenshot of the page");

    // The history lives in the store: a restart keeps it.
    coord.kill_and_restart();
    wait_until("the page after the restart", Duration::from_secs(30), || http_get(coord.metrics_port, "/").0 == 200);
    let dom = headless(&profile, &url, "--dump-dom");
    assert_eq!(attribute(&dom, "chart-hour", "data-total"), "6");
    assert_eq!(text_after(&dom, "id=\"jobs\""), "1");
}
