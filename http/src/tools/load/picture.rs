//! The load report as a picture: one self-contained HTML page (inline SVG, no script, nothing
//! fetched) with throughput and p50/p99 over time and the latency distribution, written beside
//! the report's JSON.

use std::fmt::Write as _;
use std::path::Path;

use super::{LoadConfig, LoadReport, Scenario};

/// Writes `path` with the extensions `.json` (the report) and `.html` (the picture).
pub(super) fn write(path: &Path, report: &LoadReport, config: &LoadConfig) -> Result<(), String> {
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    let (json_path, html_path) = (path.with_extension("json"), path.with_extension("html"));
    if let Some(dir) = json_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("--report: {}: {e}", dir.display()))?;
    }
    std::fs::write(&json_path, json).map_err(|e| format!("--report: {}: {e}", json_path.display()))?;
    std::fs::write(&html_path, page(report, config))
        .map_err(|e| format!("--report: {}: {e}", html_path.display()))
}

/// A line on a chart.
struct Series {
    name: &'static str,
    color: &'static str,
    points: Vec<(f64, f64)>,
}

/// The whole page.
fn page(r: &LoadReport, c: &LoadConfig) -> String {
    let (unit, what) = match r.scenario {
        Scenario::Checkout => ("checkouts", "whole checkout, from due to answer"),
        Scenario::Health => ("requests", "health request"),
        Scenario::Commits => ("commits", "commit"),
        Scenario::Lists => ("pages", "first page of a user's orders"),
    };
    let mode = if r.scenario == Scenario::Commits {
        format!("{} writers", c.concurrency)
    } else if c.ramp {
        "open-loop ramp".to_owned()
    } else {
        c.rate.map_or_else(
            || format!("closed loop, concurrency {}", c.concurrency),
            |r| format!("open loop at {r}/s"),
        )
    };
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>shop load: {unit}</title>\
         <style>body{{font:14px system-ui,sans-serif;margin:2em;color:#222;max-width:820px}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}}\
         th:first-child,td:first-child{{text-align:left}}svg{{display:block;margin:1em 0}}</style></head><body>\
         <h1>shop load: {unit}</h1><p>{} {unit} ({}) in {:.2} s: <b>{:.1} {unit}/s</b>",
        r.operations,
        escape(&mode),
        r.seconds,
        r.per_second
    );
    if r.scenario == Scenario::Checkout {
        let _ = write!(
            html,
            "; PAID {}, CANCELLED {}, retried on a held cart {}",
            r.paid, r.cancelled, r.held_cart_retries
        );
    }
    let errors: Vec<String> = r.errors.iter().map(|(what, n)| format!("{} {n}", escape(what))).collect();
    let _ = write!(
        html,
        ". Errors: {}.</p>",
        if errors.is_empty() { "none".to_owned() } else { errors.join(", ") }
    );

    let width = c.slice_seconds;
    let mut rate = vec![Series {
        name: "finished per second",
        color: "#1f77b4",
        points: r.timeline.iter().map(|s| (s.at_seconds + width / 2.0, s.per_second)).collect(),
    }];
    if let Some(ramp) = &r.ramp {
        let offered =
            ramp.steps.iter().flat_map(|s| [(s.at_seconds, s.rate), (s.at_seconds + s.seconds, s.rate)]);
        rate.push(Series { name: "offered per second", color: "#999", points: offered.collect() });
    }
    let busy = r.timeline.iter().filter(|s| s.done > 0);
    let over_time = vec![
        Series {
            name: "p50",
            color: "#2ca02c",
            points: busy.clone().map(|s| (s.at_seconds + width / 2.0, s.p50_ms)).collect(),
        },
        Series {
            name: "p99",
            color: "#d62728",
            points: busy.map(|s| (s.at_seconds + width / 2.0, s.p99_ms)).collect(),
        },
    ];
    html += &chart(
        &format!("Throughput ({unit} finished per second, {width} s slices)"),
        "seconds",
        "per second",
        &rate,
        None,
    );
    html += &chart(&format!("Latency over time ({what})"), "seconds", "ms", &over_time, None);
    // The distribution on a scale of nines: 50% at 0.3, 90% at 1, 99% at 2, 99.9% at 3 …
    let nines = |p: f64| -(1.0 - (p / 100.0).min(0.99999)).log10();
    let spread = vec![Series {
        name: "latency at percentile",
        color: "#9467bd",
        points: r.distribution.iter().map(|[p, ms]| (nines(*p), *ms)).collect(),
    }];
    let ticks = [50.0, 90.0, 99.0, 99.9, 99.99, 99.999].map(|p| (nines(p), format!("{p}%")));
    html += &chart(&format!("Latency distribution ({what})"), "percentile", "ms", &spread, Some(&ticks));

    html += "<table><tr><th>endpoint</th><th>requests</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>";
    for (name, e) in &r.endpoints {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            escape(name),
            e.requests,
            e.p50_ms,
            e.p90_ms,
            e.p99_ms,
            e.p999_ms,
            e.max_ms
        );
    }
    html += "</table>";
    if let Some(ramp) = &r.ramp {
        html += "<h2>Ramp</h2><table><tr><th>rate /s</th><th>offered</th><th>completed</th><th>p50 ms</th><th>p99 ms</th><th>drained s</th><th>kept up</th></tr>";
        for s in &ramp.steps {
            let _ = write!(
                html,
                "<tr><td>{:.1}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
                s.rate,
                s.offered,
                s.completed,
                s.p50_ms,
                s.p99_ms,
                s.drained_seconds,
                if s.kept_up { "yes" } else { "no" }
            );
        }
        let found = ramp.sustained_rate.map_or_else(|| "none".to_owned(), |r| format!("{r}/s"));
        let _ = write!(html, "</table><p>Sustained: <b>{found}</b>. {}.</p>", escape(&ramp.stopped));
    }
    html += "</body></html>\n";
    html
}

const W: f64 = 760.0;
const H: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 40.0;

/// One line chart as an inline SVG; `x_ticks`, when given, replace the evenly spaced ones.
fn chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    x_ticks: Option<&[(f64, String)]>,
) -> String {
    let all = || {
        series.iter().flat_map(|s| s.points.iter().copied()).filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let x_max = all()
        .map(|p| p.0)
        .fold(0.0, f64::max)
        .max(x_ticks.map_or(0.0, |t| t.iter().map(|t| t.0).fold(0.0, f64::max)));
    let x_min = x_ticks.map_or(0.0, |t| t.iter().map(|t| t.0).fold(f64::INFINITY, f64::min)).min(x_max);
    let y_step = nice_step(all().map(|p| p.1).fold(0.0, f64::max));
    let y_max = (all().map(|p| p.1).fold(0.0, f64::max) / y_step).ceil().max(1.0) * y_step;
    let x_span = (x_max - x_min).max(f64::EPSILON);
    let px = |x: f64| LEFT + (x - x_min) / x_span * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - y / y_max * (H - TOP - BOTTOM);

    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-size=\"11\">\
         <text x=\"{LEFT}\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        escape(title)
    );
    let mut y = 0.0;
    while y <= y_max + y_step / 2.0 {
        let (right, at, label) = (W - RIGHT, py(y), number(y));
        let (label_x, label_y) = (LEFT - 6.0, at + 4.0);
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{right:.1}\" y1=\"{at:.1}\" y2=\"{at:.1}\" stroke=\"#eee\"/>\
             <text x=\"{label_x:.1}\" y=\"{label_y:.1}\" text-anchor=\"end\">{label}</text>"
        );
        y += y_step;
    }
    let evenly: Vec<(f64, String)>;
    let ticks = match x_ticks {
        Some(t) => t,
        None => {
            let step = nice_step(x_span);
            evenly = (0..=((x_max - x_min) / step).floor() as usize)
                .map(|i| (x_min + i as f64 * step, number(x_min + i as f64 * step)))
                .collect();
            &evenly
        }
    };
    for (x, label) in ticks {
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"#ccc\"/>\
             <text x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"middle\">{4}</text>",
            px(*x),
            H - BOTTOM,
            H - BOTTOM + 4.0,
            H - BOTTOM + 16.0,
            escape(label)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {3:.1})\" text-anchor=\"middle\">{}</text>\
         <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#888\"/>",
        (LEFT + W - RIGHT) / 2.0,
        H - 6.0,
        escape(x_label),
        (TOP + H - BOTTOM) / 2.0,
        escape(y_label),
        W - LEFT - RIGHT,
        H - TOP - BOTTOM
    );
    for s in series {
        let points: Vec<String> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" points=\"{}\"/>",
            s.color,
            points.join(" ")
        );
    }
    // The legend, over the lines, on a pale ground.
    let _ = write!(
        svg,
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"170\" height=\"{:.1}\" fill=\"white\" fill-opacity=\"0.8\"/>",
        W - RIGHT - 176.0,
        TOP + 3.0,
        14.0 * series.len() as f64 + 4.0
    );
    for (i, s) in series.iter().enumerate() {
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"3\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            W - RIGHT - 170.0,
            TOP + 10.0 + 14.0 * i as f64,
            s.color,
            W - RIGHT - 155.0,
            TOP + 14.0 + 14.0 * i as f64,
            escape(s.name)
        );
    }
    svg += "</svg>";
    svg
}

/// A round step (1, 2 or 5 times a power of ten) that cuts `span` into about five.
fn nice_step(span: f64) -> f64 {
    if !(span > 0.0 && span.is_finite()) {
        return 1.0;
    }
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude)
}

fn number(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}").trim_end_matches('0').to_owned()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round_and_cut_a_span_into_about_five() {
        assert_eq!(nice_step(100.0), 20.0);
        assert_eq!(nice_step(7.0), 2.0);
        assert_eq!(nice_step(0.3), 0.1);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(nice_step(f64::NAN), 1.0);
    }

    #[test]
    fn a_chart_draws_each_series_inside_its_frame_and_escapes_its_text() {
        let s =
            Series { name: "a<b", color: "#000", points: vec![(0.0, 0.0), (10.0, 50.0), (5.0, f64::NAN)] };
        let svg = chart("t & u", "x", "y", &[s], None);
        assert!(svg.contains("t &amp; u") && svg.contains("a&lt;b"), "{svg}");
        let line = svg.split("points=\"").nth(1).and_then(|p| p.split('"').next()).expect("a polyline");
        let points: Vec<(f64, f64)> = line
            .split(' ')
            .map(|p| p.split_once(',').map(|(x, y)| (x.parse().unwrap_or(-1.0), y.parse().unwrap_or(-1.0))))
            .collect::<Option<_>>()
            .expect("x,y pairs");
        assert_eq!(points.len(), 2, "the NaN point is left out: {line}");
        assert_eq!(points[0], (LEFT, H - BOTTOM), "the origin is the frame's bottom left");
        assert!((points[1].0 - (W - RIGHT)).abs() < 0.1, "the last x is the frame's right: {line}");
        assert!(
            points[1].1 >= TOP && points[1].1 < H - BOTTOM,
            "the highest point is inside the frame: {line}"
        );
    }
}
