//! The load overview drawn on the server as inline SVG: origin→viewers, origin→caches,
//! caches→viewers and demand as rates over time, and the totals table beside it. The live
//! refresh fetches the same markup as JSON.

use maud::{Markup, html};
use rivulet_tracker_client::LoadPoint;

use super::layout::{bytes_data, rate};
use crate::nodes::BUCKET_SECS;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 280.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 30.0;

/// One line of the chart.
#[derive(Clone, Copy, Debug)]
pub struct Series {
    /// The element id stem and CSS class (`s-<key>`).
    pub key: &'static str,
    pub label: &'static str,
    pub value: fn(&LoadPoint) -> u64,
}

/// The four lines, in drawing order.
pub const SERIES: [Series; 4] = [
    Series {
        key: "demand",
        label: "demand (all bytes to viewers)",
        value: |p| p.demand,
    },
    Series {
        key: "origin-to-caches",
        label: "origin → caches",
        value: |p| p.origin_to_caches,
    },
    Series {
        key: "origin-to-viewers",
        label: "origin → viewers",
        value: |p| p.origin_to_viewers,
    },
    Series {
        key: "caches-to-viewers",
        label: "caches → viewers",
        value: |p| p.caches_to_viewers,
    },
];

/// The buckets of the last `minutes` up to `now` (Unix seconds), zero where nothing moved.
fn buckets(points: &[LoadPoint], minutes: u32, now: i64) -> Vec<LoadPoint> {
    let last = now / BUCKET_SECS * BUCKET_SECS;
    let count = (i64::from(minutes) * 60 / BUCKET_SECS).max(2);
    let first = last - (count - 1) * BUCKET_SECS;
    (0..count)
        .map(|i| {
            let at = (first + i * BUCKET_SECS) as u64;
            points
                .iter()
                .find(|p| p.at == at)
                .cloned()
                .unwrap_or(LoadPoint {
                    at,
                    secs: BUCKET_SECS as u64,
                    origin_to_viewers: 0,
                    origin_to_caches: 0,
                    caches_to_viewers: 0,
                    demand: 0,
                })
        })
        .collect()
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1000.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

/// Bits per second of one bucket.
fn bps(bytes: u64) -> f64 {
    bytes as f64 * 8.0 / BUCKET_SECS as f64
}

/// The chart of the last `minutes` as inline SVG.
pub fn load_chart(points: &[LoadPoint], minutes: u32, now: i64) -> Markup {
    let buckets = buckets(points, minutes, now);
    let peak = buckets
        .iter()
        .flat_map(|p| SERIES.iter().map(move |s| bps((s.value)(p))))
        .fold(0.0, f64::max);
    let top = nice_ceiling(peak);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |i: usize| LEFT + plot_w * i as f64 / (buckets.len() - 1) as f64;
    let y = |v: f64| TOP + plot_h * (1.0 - v / top);
    let line = |s: &Series| {
        buckets
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(bps((s.value)(p)))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let ticks = [0.0, 0.25, 0.5, 0.75, 1.0];
    html! {
        svg.chart #load-svg xmlns="http://www.w3.org/2000/svg"
            viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
            aria-label="Load over time" data-peak-bps=(peak.round()) {
            title { "Load over the last " (minutes) " minutes" }
            @for t in ticks {
                line.grid x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(top * t)) y2=(y(top * t)) {}
                text.axis x=(LEFT - 6.0) y=(y(top * t) + 4.0) text-anchor="end" { (rate(top * t)) }
            }
            text.axis x=(LEFT) y=(HEIGHT - 8.0) text-anchor="start" { "−" (minutes) " min" }
            @if minutes >= 2 {
                text.axis x=(LEFT + plot_w / 2.0) y=(HEIGHT - 8.0) text-anchor="middle" {
                    "−" (f64::from(minutes) / 2.0) " min"
                }
            }
            text.axis x=(WIDTH - RIGHT) y=(HEIGHT - 8.0) text-anchor="end" { "now" }
            @for s in &SERIES {
                polyline class={ "series s-" (s.key) } id={ "line-" (s.key) }
                    points=(line(s)) fill="none" {}
            }
        }
    }
}

/// The totals over the window, with the share of demand the caches served.
pub fn load_totals(points: &[LoadPoint], minutes: u32) -> Markup {
    let sum = |f: fn(&LoadPoint) -> u64| points.iter().map(f).fold(0u64, u64::saturating_add);
    let demand = sum(|p| p.demand);
    let from_caches = sum(|p| p.caches_to_viewers);
    let secs = f64::from(minutes) * 60.0;
    html! {
        table.totals #load-totals {
            thead { tr { th { "Flow" } th { "Bytes in the last " (minutes) " min" } th { "Average" } } }
            tbody {
                @for s in &SERIES {
                    @let total = sum(s.value);
                    tr id={ "total-" (s.key) } {
                        td { span class={ "swatch s-" (s.key) } {} (s.label) }
                        td { (bytes_data(total)) }
                        td { (rate(total as f64 * 8.0 / secs)) }
                    }
                }
                tr #share {
                    td { "served by caches" }
                    td colspan="2" {
                        @if demand == 0 { "—" }
                        @else { (format!("{:.0}", 100.0 * from_caches as f64 / demand as f64)) "% of demand" }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(0.0), 1000.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(1200.0), 2000.0);
        assert_eq!(nice_ceiling(10_000.0), 10_000.0);
    }

    #[test]
    fn empty_buckets_are_zero_and_the_last_is_now() {
        let p = LoadPoint {
            at: 1000,
            secs: 10,
            origin_to_viewers: 5,
            origin_to_caches: 0,
            caches_to_viewers: 0,
            demand: 5,
        };
        let b = buckets(&[p], 1, 1005);
        assert_eq!(b.len(), 6);
        assert_eq!(b.last().unwrap().at, 1000);
        assert_eq!(b.last().unwrap().demand, 5);
        assert_eq!(b[0].demand, 0);
    }
}
