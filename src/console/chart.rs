//! The overview's 24-hour charts: inline SVG drawn on the server (no script),
//! one bar per hour, with a text alternative and the numbers in a table.

use chrono::{DateTime, Timelike, Utc};
use maud::{Markup, html};

use crate::store::HourActivity;

const WIDTH: f64 = 240.0;
const HEIGHT: f64 = 64.0;
const GAP: f64 = 1.0;

/// One series of a chart: a title and a value per hour.
struct Series<'a> {
    id: String,
    title: &'a str,
    unit: &'a str,
    values: Vec<u64>,
}

/// The events and Moodle calls of the last 24 hours, two bar charts side by
/// side and the numbers per hour in a table that can be opened.
pub fn activity(tenant: &str, hours: &[HourActivity]) -> Markup {
    let events = Series {
        id: format!("events-{tenant}"),
        title: "Events received",
        unit: "events",
        values: hours.iter().map(|h| h.events).collect(),
    };
    let calls = Series {
        id: format!("calls-{tenant}"),
        title: "Moodle calls",
        unit: "calls",
        values: hours.iter().map(|h| h.calls).collect(),
    };
    let starts: Vec<DateTime<Utc>> = hours.iter().map(|h| h.start).collect();
    html! {
        div class="charts" {
            (bars(&events, &starts))
            (bars(&calls, &starts))
        }
        details class="numbers" {
            summary { "Numbers per hour" }
            div class="scroll" {
                table {
                    caption { "Events and Moodle calls per hour (UTC), last 24 hours" }
                    thead { tr { th scope="col" { "Hour" } th scope="col" { "Events" } th scope="col" { "Moodle calls" } } }
                    tbody {
                        @for h in hours.iter().filter(|h| h.events > 0 || h.calls > 0) {
                            tr {
                                td { (h.start.format("%Y-%m-%d %H:00")) }
                                td { (h.events) }
                                td { (h.calls) }
                            }
                        }
                        @if hours.iter().all(|h| h.events == 0 && h.calls == 0) {
                            tr { td colspan="3" { "Nothing in the last 24 hours." } }
                        }
                    }
                }
            }
        }
    }
}

fn bars(series: &Series<'_>, starts: &[DateTime<Utc>]) -> Markup {
    let total: u64 = series.values.iter().sum();
    let max = series.values.iter().copied().max().unwrap_or(0);
    let n = series.values.len().max(1) as f64;
    let slot = WIDTH / n;
    let scale = if max == 0 {
        0.0
    } else {
        (HEIGHT - 2.0) / max as f64
    };
    let label = format!(
        "{}: {total} {} in the last 24 hours, at most {max} in one hour",
        series.title, series.unit
    );
    let first = starts.first().map(|t| t.hour());
    html! {
        figure class="chart" {
            figcaption id={ (series.id) "-caption" } {
                (series.title) ": " strong { (total) } " in 24 h"
                span class="muted" { " (peak " (max) "/h)" }
            }
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT + 12.0) } role="img"
                aria-labelledby={ (series.id) "-title" } focusable="false" {
                title id={ (series.id) "-title" } { (label) }
                line x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) class="axis" {}
                @for (i, v) in series.values.iter().enumerate() {
                    @let h = (*v as f64 * scale).max(if *v > 0 { 1.5 } else { 0.0 });
                    rect x=(fmt(i as f64 * slot + GAP / 2.0)) y=(fmt(HEIGHT - h))
                        width=(fmt(slot - GAP)) height=(fmt(h)) class="bar" {
                        title {
                            @if let Some(t) = starts.get(i) { (t.format("%H:00")) " UTC: " }
                            (v) " " (series.unit)
                        }
                    }
                }
                @if let Some(hour) = first {
                    text x="0" y=(HEIGHT + 10.0) class="tick" { (format!("{hour:02}:00")) }
                }
                text x=(WIDTH) y=(HEIGHT + 10.0) class="tick end" { "now" }
            }
        }
    }
}

/// A coordinate with at most two decimals.
fn fmt(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn bars_scale_to_the_busiest_hour_and_say_the_totals() {
        let from = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let hours: Vec<HourActivity> = (0..24)
            .map(|h| HourActivity {
                start: from + TimeDelta::hours(h),
                events: if h == 23 {
                    4
                } else if h == 22 {
                    2
                } else {
                    0
                },
                calls: if h == 23 { 12 } else { 0 },
            })
            .collect();
        let svg = activity("acme", &hours).into_string();
        assert!(
            svg.contains("Events received: 6 events in the last 24 hours, at most 4 in one hour")
        );
        assert!(svg.contains("Moodle calls: 12 calls in the last 24 hours"));
        // The busiest hour fills the height; an empty one has no height.
        assert!(svg.contains(r#"height="62""#), "{svg}");
        assert!(svg.contains(r#"height="31""#), "{svg}");
        assert!(svg.contains(r#"height="0""#));
        assert_eq!(fmt(2.50), "2.5");
        assert_eq!(fmt(10.0), "10");
    }
}
