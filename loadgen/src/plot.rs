//! `--plot FILE.svg`: a run at a glance. The upper panel draws produce and consume throughput
//! for every second of the run; the lower one the latency percentile curves (produce ack and
//! end-to-end) on HdrHistogram's "number of nines" axis, where the tail is as wide as the body.
//!
//! Hand-written SVG: two line charts need no plotting crate.

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::run::Outcome;
use crate::stats::Sample;

const W: f64 = 900.0;
const PANEL_H: f64 = 300.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 40.0;
const GAP: f64 = 80.0;
/// The percentile axis runs to 99.999% (five nines).
const NINES_MAX: f64 = 5.0;
const PRODUCE_COLOR: &str = "#1f77b4";
const CONSUME_COLOR: &str = "#d62728";

/// A rectangle to draw a chart in, with data ranges mapped onto it.
struct Frame {
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
    x_max: f64,
    y_min: f64,
    y_max: f64,
    log_y: bool,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        self.x0 + x / self.x_max * self.w
    }

    fn py(&self, y: f64) -> f64 {
        let f = if self.log_y {
            (y.max(self.y_min).log10() - self.y_min.log10())
                / (self.y_max.log10() - self.y_min.log10())
        } else {
            (y - self.y_min) / (self.y_max - self.y_min)
        };
        self.y0 + self.h - f.clamp(0.0, 1.0) * self.h
    }

    fn axes(&self, svg: &mut String, title: &str, x_label: &str, y_label: &str) {
        let (x0, y0, w, h) = (self.x0, self.y0, self.w, self.h);
        let _ = write!(
            svg,
            r##"<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#444"/>
<text x="{}" y="{}" font-size="16" text-anchor="middle" font-weight="bold">{title}</text>
<text x="{}" y="{}" font-size="12" text-anchor="middle">{x_label}</text>
<text x="20" y="{}" font-size="12" text-anchor="middle" transform="rotate(-90 20 {})">{y_label}</text>
"##,
            x0 + w / 2.0,
            y0 - 12.0,
            x0 + w / 2.0,
            y0 + h + 36.0,
            y0 + h / 2.0,
            y0 + h / 2.0,
        );
    }

    fn y_tick(&self, svg: &mut String, y: f64, label: &str) {
        let py = self.py(y);
        let _ = writeln!(
            svg,
            r##"<line x1="{}" y1="{py}" x2="{}" y2="{py}" stroke="#ddd"/><text x="{}" y="{}" font-size="11" text-anchor="end">{label}</text>"##,
            self.x0,
            self.x0 + self.w,
            self.x0 - 6.0,
            py + 4.0
        );
    }

    fn x_tick(&self, svg: &mut String, x: f64, label: &str) {
        let px = self.px(x);
        let _ = writeln!(
            svg,
            r##"<line x1="{px}" y1="{}" x2="{px}" y2="{}" stroke="#ddd"/><text x="{px}" y="{}" font-size="11" text-anchor="middle">{label}</text>"##,
            self.y0,
            self.y0 + self.h,
            self.y0 + self.h + 16.0
        );
    }

    /// Draws a polyline; the consume/end-to-end series is dashed so that it stays visible when
    /// it lies exactly on the produce series.
    fn line(&self, svg: &mut String, points: &[(f64, f64)], color: &str) {
        if points.is_empty() {
            return;
        }
        let pts: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", self.px(*x), self.py(*y)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2"{} points="{}"/>"#,
            if color == CONSUME_COLOR {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            },
            pts.join(" ")
        );
    }
}

/// A round step for about five ticks up to `max`.
fn step(max: f64) -> f64 {
    let raw = (max / 5.0).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn legend(svg: &mut String, x: f64, y: f64, entries: &[(&str, &str)]) {
    for (i, (label, color)) in entries.iter().enumerate() {
        let yy = y + i as f64 * 16.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" y1="{yy}" x2="{}" y2="{yy}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}" font-size="12">{label}</text>"#,
            x + 20.0,
            x + 26.0,
            yy + 4.0
        );
    }
}

fn throughput(svg: &mut String, samples: &[Sample], title: &str) {
    let t_max = samples.iter().map(|s| s.t_s).fold(1.0, f64::max);
    let y_top = samples
        .iter()
        .map(|s| s.produce_msgs_per_sec.max(s.consume_msgs_per_sec))
        .fold(1.0, f64::max);
    let st = step(y_top);
    let f = Frame {
        x0: LEFT,
        y0: TOP,
        w: W - LEFT - RIGHT,
        h: PANEL_H,
        x_max: t_max,
        y_min: 0.0,
        y_max: (y_top / st).ceil() * st,
        log_y: false,
    };
    f.axes(svg, title, "seconds since start", "messages/s");
    let mut y = 0.0;
    while y <= f.y_max + 1e-9 {
        f.y_tick(svg, y, &format!("{y:.0}"));
        y += st;
    }
    let xs = step(t_max);
    let mut x = 0.0;
    while x <= t_max + 1e-9 {
        f.x_tick(svg, x, &format!("{x:.0}"));
        x += xs;
    }
    let produce: Vec<_> = samples
        .iter()
        .map(|s| (s.t_s, s.produce_msgs_per_sec))
        .collect();
    let consume: Vec<_> = samples
        .iter()
        .map(|s| (s.t_s, s.consume_msgs_per_sec))
        .collect();
    if produce.iter().any(|p| p.1 > 0.0) {
        f.line(svg, &produce, PRODUCE_COLOR);
    }
    if consume.iter().any(|p| p.1 > 0.0) {
        f.line(svg, &consume, CONSUME_COLOR);
    }
    legend(
        svg,
        f.x0 + f.w - 150.0,
        f.y0 + 14.0,
        &[("produce", PRODUCE_COLOR), ("consume", CONSUME_COLOR)],
    );
}

/// (nines, latency ms) along the percentile curve.
fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    (0..=100)
        .map(|i| {
            let nines = NINES_MAX * i as f64 / 100.0;
            let q = 1.0 - 10f64.powf(-nines);
            (nines, h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect()
}

fn latency(svg: &mut String, o: &Outcome) {
    let produce = curve(&o.totals.hists.produce);
    let e2e = curve(&o.totals.hists.e2e);
    let all = produce.iter().chain(&e2e).map(|p| p.1);
    let lo = all.clone().fold(f64::MAX, f64::min).max(0.001);
    let hi = all.fold(0.0, f64::max).max(lo * 10.0);
    let f = Frame {
        x0: LEFT,
        y0: TOP + PANEL_H + GAP,
        w: W - LEFT - RIGHT,
        h: PANEL_H,
        x_max: NINES_MAX,
        y_min: 10f64.powf(lo.log10().floor()),
        y_max: 10f64.powf(hi.log10().ceil()),
        log_y: true,
    };
    f.axes(
        svg,
        "Latency by percentile",
        "percentile",
        "latency (ms, log scale)",
    );
    let mut y = f.y_min;
    while y <= f.y_max * 1.0001 {
        f.y_tick(svg, y, &format!("{y}"));
        y *= 10.0;
    }
    for (x, label) in [
        (0.0, "0%"),
        (1.0, "90%"),
        (2.0, "99%"),
        (3.0, "99.9%"),
        (4.0, "99.99%"),
        (5.0, "99.999%"),
    ] {
        f.x_tick(svg, x, label);
    }
    f.line(svg, &produce, PRODUCE_COLOR);
    f.line(svg, &e2e, CONSUME_COLOR);
    legend(
        svg,
        f.x0 + 14.0,
        f.y0 + 14.0,
        &[
            ("produce ack", PRODUCE_COLOR),
            ("end-to-end", CONSUME_COLOR),
        ],
    );
}

/// The whole SVG document.
pub fn svg(o: &Outcome, title: &str) -> String {
    let h = TOP + 2.0 * PANEL_H + GAP + 50.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    throughput(&mut svg, &o.totals.samples, title);
    latency(&mut svg, o);
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(step(100.0), 20.0);
        assert_eq!(step(7.0), 2.0);
        assert_eq!(step(1_000_000.0), 200_000.0);
    }
}
