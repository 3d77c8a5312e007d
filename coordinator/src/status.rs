//! The farm's figures — per tier: verified inferences, failures, latency
//! percentiles; the queue and the live workers — as `GetStats` sends them
//! and as the status page (`/` on the metrics address) shows them, with
//! charts of inferences per tier over the last hour and the last day. The
//! page is rendered on the server (HTML and inline SVG, no scripts), and
//! reads the store, so a restarted coordinator shows the same history.

use std::fmt::Write;

use anyhow::Result;
use zkfarm_prover::Tier;

use crate::store::{JobStore, TierSeries};

/// One tier's figures.
pub struct TierFigures {
    pub tier: Tier,
    /// Verified inferences (over the latest 100 000).
    pub done: u64,
    pub failed: u64,
    /// Submission to verified receipt, ms.
    pub p50_ms: f64,
    pub p95_ms: f64,
}

pub struct FarmStats {
    pub tiers: Vec<TierFigures>,
    pub queue_depth: u64,
    pub oldest_waiting_s: f64,
    pub live_workers: u32,
    pub jobs: u64,
}

/// How many of a tier's latest tasks the percentiles cover.
const LATENCY_WINDOW: u32 = 100_000;

pub fn stats(store: &dyn JobStore, now_ms: i64) -> Result<FarmStats> {
    let mut tiers = Vec::new();
    for tier in Tier::ALL {
        let (mut lat, failed) = store.tier_latencies(tier, LATENCY_WINDOW)?;
        lat.sort_unstable();
        tiers.push(TierFigures {
            tier,
            done: lat.len() as u64,
            failed,
            p50_ms: percentile(&lat, 0.50),
            p95_ms: percentile(&lat, 0.95),
        });
    }
    let (queue_depth, oldest) = store.queue()?;
    Ok(FarmStats {
        tiers,
        queue_depth,
        oldest_waiting_s: oldest.map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0),
        live_workers: store.live_workers()?,
        jobs: store.job_count()?,
    })
}

/// The p-quantile of sorted values (nearest rank), 0 when empty.
fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

/// A chart's span: `buckets` bars of `minutes` each.
struct Span {
    title: &'static str,
    /// The left end of the time axis.
    since: &'static str,
    id: &'static str,
    minutes: i64,
    buckets: usize,
}

const SPANS: [Span; 2] = [
    Span { title: "Inferences per minute, last hour", since: "60 min ago", id: "hour", minutes: 1, buckets: 60 },
    Span { title: "Inferences per 30 minutes, last day", since: "24 h ago", id: "day", minutes: 30, buckets: 48 },
];

/// Bar colours by tier, in `Tier::ALL` order.
const COLOURS: [&str; 3] = ["#3566a8", "#d08a1e", "#4b9a58"];

/// The status page.
pub fn page(store: &dyn JobStore, now_ms: i64) -> Result<String> {
    let s = stats(store, now_ms)?;
    let total: u64 = s.tiers.iter().map(|t| t.done).sum();
    let mut html = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>zkfarm status</title>\
         <meta http-equiv=\"refresh\" content=\"10\"><style>\
         body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}\
         td,th{padding:.3em .8em;text-align:right;border-bottom:1px solid #ddd}th:first-child,td:first-child{text-align:left}\
         .figures span{display:inline-block;margin-right:2em}.legend span{margin-right:1.5em}\
         </style></head><body>\n<h1>zkfarm</h1>\n",
    );
    let _ = writeln!(
        html,
        "<p class=\"figures\"><span>jobs <b id=\"jobs\">{}</b></span><span>queue depth <b id=\"queue_depth\">{}</b></span>\
         <span>oldest wait <b id=\"oldest_waiting_s\">{:.1}</b> s</span><span>live workers <b id=\"live_workers\">{}</b></span></p>",
        s.jobs, s.queue_depth, s.oldest_waiting_s, s.live_workers
    );
    html +=
        "<table><tr><th>tier</th><th>verified</th><th>share</th><th>failed</th><th>p50 ms</th><th>p95 ms</th></tr>\n";
    for t in &s.tiers {
        let share = if total == 0 { 0.0 } else { 100.0 * t.done as f64 / total as f64 };
        let name = t.tier.as_str();
        let _ = writeln!(
            html,
            "<tr data-tier=\"{name}\"><td>{name}</td><td data-field=\"count\">{}</td><td data-field=\"share_percent\">{share:.1}%</td>\
             <td data-field=\"failed\">{}</td><td data-field=\"p50_ms\">{:.1}</td><td data-field=\"p95_ms\">{:.1}</td></tr>",
            t.done, t.failed, t.p50_ms, t.p95_ms
        );
    }
    html += "</table>\n<p class=\"legend\">";
    for (tier, colour) in Tier::ALL.iter().zip(COLOURS) {
        let _ = write!(html, "<span style=\"color:{colour}\">&#9632; {}</span>", tier.as_str());
    }
    html += "</p>\n";
    for span in &SPANS {
        let series = store.tier_series(now_ms, span.minutes, span.buckets)?;
        chart(&mut html, span, &series);
    }
    html += "</body></html>\n";
    Ok(html)
}

/// Stacked bars of verified inferences per tier and bucket, with each
/// bucket's figures in data attributes (what the tests read).
fn chart(html: &mut String, span: &Span, series: &[TierSeries]) {
    const W: usize = 720;
    const H: usize = 160;
    let bar = W / span.buckets;
    let totals: Vec<u64> = (0..span.buckets).map(|b| series.iter().map(|s| s.done[b]).sum()).collect();
    let peak = totals.iter().copied().max().unwrap_or(0);
    let sum: u64 = totals.iter().sum();
    let _ = writeln!(
        html,
        "<h2>{}</h2>\n<svg id=\"chart-{}\" data-total=\"{sum}\" width=\"{W}\" height=\"{}\" role=\"img\" \
         aria-label=\"{}\"><line x1=\"0\" y1=\"{H}\" x2=\"{W}\" y2=\"{H}\" stroke=\"#999\"/>",
        span.title,
        span.id,
        H + 14,
        span.title
    );
    for b in 0..span.buckets {
        let mut y = H;
        for (s, colour) in series.iter().zip(COLOURS) {
            let (tier, done) = (s.tier, &s.done);
            let h = (done[b] as usize * H).div_ceil(peak.max(1) as usize);
            if h == 0 {
                continue;
            }
            y -= h.min(y);
            let _ = write!(
                html,
                "<rect x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{h}\" fill=\"{colour}\"><title>{} {}</title></rect>",
                b * bar,
                bar.saturating_sub(1).max(1),
                done[b],
                tier.as_str()
            );
        }
    }
    let _ = writeln!(
        html,
        "<text x=\"0\" y=\"{y}\" font-size=\"11\">{}</text><text x=\"{}\" y=\"{y}\" font-size=\"11\" \
         text-anchor=\"middle\">peak {peak} per bar; {sum} in all</text><text x=\"{W}\" y=\"{y}\" font-size=\"11\" \
         text-anchor=\"end\">now</text></svg>",
        span.since,
        W / 2,
        y = H + 12
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 0.5), 0.0);
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!((percentile(&v, 0.5), percentile(&v, 0.95), percentile(&v, 1.0)), (50.0, 95.0, 100.0));
    }
}
