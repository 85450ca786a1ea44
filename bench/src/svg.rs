//! Small hand-written SVG charts: a log-log line chart and a grouped bar chart.

use std::fmt::Write as _;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 240.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `1000` as "1k", `1e6` as "1M"; small numbers as they are.
pub fn si(value: f64) -> String {
    let (v, unit) = if value >= 1e6 {
        (value / 1e6, "M")
    } else if value >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let text = if v >= 1.0 && v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    };
    format!("{text}{unit}")
}

fn open(title: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        WIDTH / 2.0,
        escape(title)
    );
    out
}

fn legend(out: &mut String, names: &[&str]) {
    for (i, name) in names.iter().enumerate() {
        let y = TOP + 10.0 + i as f64 * 20.0;
        let x = WIDTH - RIGHT + 15.0;
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{}\" width=\"14\" height=\"10\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{y}\" dominant-baseline=\"middle\">{}</text>",
            y - 5.0,
            COLORS[i % COLORS.len()],
            x + 20.0,
            escape(name)
        );
    }
}

/// Powers of ten covering `[lo, hi]` (positive).
fn decades(lo: f64, hi: f64) -> (i32, i32) {
    let lo = lo.log10().floor() as i32;
    let hi = (hi.log10().ceil() as i32).max(lo + 1);
    (lo, hi)
}

/// A horizontal line across a chart, e.g. a goal.
#[derive(Debug, Clone)]
pub struct Reference {
    pub y: f64,
    pub label: String,
}

/// A line chart with logarithmic axes; points that are not positive are left out.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    reference: Option<&Reference>,
) -> String {
    let points = series
        .iter()
        .flat_map(|(_, p)| p.iter())
        .filter(|(x, y)| *x > 0.0 && *y > 0.0 && y.is_finite());
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x_lo = x_lo.min(x);
        x_hi = x_hi.max(x);
        y_lo = y_lo.min(y);
        y_hi = y_hi.max(y);
    }
    if let Some(r) = reference.filter(|r| r.y > 0.0) {
        y_lo = y_lo.min(r.y);
        y_hi = y_hi.max(r.y);
    }
    if x_lo > x_hi {
        (x_lo, x_hi, y_lo, y_hi) = (1.0, 10.0, 1.0, 10.0);
    }
    let (xd_lo, xd_hi) = decades(x_lo, x_hi);
    let (yd_lo, yd_hi) = decades(y_lo, y_hi);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| LEFT + (x.log10() - f64::from(xd_lo)) / f64::from(xd_hi - xd_lo) * plot_w;
    let py =
        |y: f64| TOP + plot_h - (y.log10() - f64::from(yd_lo)) / f64::from(yd_hi - yd_lo) * plot_h;

    let mut out = open(title);
    for d in xd_lo..=xd_hi {
        let x = px(10f64.powi(d));
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + plot_h,
            TOP + plot_h + 18.0,
            si(10f64.powi(d))
        );
    }
    for d in yd_lo..=yd_hi {
        let y = py(10f64.powi(d));
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{y:.1}\" text-anchor=\"end\" dominant-baseline=\"middle\">{}</text>",
            LEFT + plot_w,
            LEFT - 8.0,
            si(10f64.powi(d))
        );
    }
    axes(&mut out, x_label, y_label);
    if let Some(r) = reference.filter(|r| r.y > 0.0) {
        let y = py(r.y);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#555\" \
             stroke-dasharray=\"6 4\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" \
             fill=\"#555\">{}</text>",
            LEFT + plot_w,
            LEFT + plot_w - 4.0,
            y - 5.0,
            escape(&r.label)
        );
    }
    for (i, (_, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let coords: Vec<String> = pts
            .iter()
            .filter(|(x, y)| *x > 0.0 && *y > 0.0 && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
            coords.join(" ")
        );
        for c in &coords {
            let (x, y) = c.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                out,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"3.5\" fill=\"{color}\"/>"
            );
        }
    }
    let names: Vec<&str> = series.iter().map(|(n, _)| n.as_str()).collect();
    legend(&mut out, &names);
    out.push_str("</svg>\n");
    out
}

fn axes(out: &mut String, x_label: &str, y_label: &str) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let _ = writeln!(
        out,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#333\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"18\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {:.1})\">{}</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0,
        escape(x_label),
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
}

/// A round step for about five gridlines up to `max`.
fn nice_step(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// A grouped bar chart: one group per entry of `groups`, one bar per series in each.
pub fn bar_chart(
    title: &str,
    y_label: &str,
    groups: &[String],
    series: &[(String, Vec<f64>)],
) -> String {
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let step = nice_step(max);
    let top = (max / step).ceil().max(1.0) * step;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let py = |v: f64| TOP + plot_h - v / top * plot_h;
    let mut out = open(title);
    let mut tick = 0.0;
    while tick <= top + step / 2.0 {
        let y = py(tick);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{y:.1}\" text-anchor=\"end\" dominant-baseline=\"middle\">{}</text>",
            LEFT + plot_w,
            LEFT - 8.0,
            si(tick)
        );
        tick += step;
    }
    axes(&mut out, "", y_label);
    let group_w = plot_w / groups.len().max(1) as f64;
    let bar_w = group_w * 0.8 / series.len().max(1) as f64;
    for (g, group) in groups.iter().enumerate() {
        let gx = LEFT + g as f64 * group_w + group_w * 0.1;
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            LEFT + (g as f64 + 0.5) * group_w,
            TOP + plot_h + 18.0,
            escape(group)
        );
        for (s, (_, values)) in series.iter().enumerate() {
            let v = values.get(g).copied().unwrap_or(0.0);
            let v = if v.is_finite() { v } else { 0.0 };
            let _ = writeln!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}</title></rect>",
                gx + s as f64 * bar_w,
                py(v),
                bar_w * 0.9,
                TOP + plot_h - py(v),
                COLORS[s % COLORS.len()],
                si(v.round())
            );
        }
    }
    let names: Vec<&str> = series.iter().map(|(n, _)| n.as_str()).collect();
    legend(&mut out, &names);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_labels() {
        assert_eq!(si(1000.0), "1k");
        assert_eq!(si(1_000_000.0), "1M");
        assert_eq!(si(250_000.0), "250k");
        assert_eq!(si(0.01), "0.01");
        assert_eq!(si(0.0), "0");
    }

    #[test]
    fn charts_are_well_formed_svg() {
        let line = line_chart(
            "t <1>",
            "x",
            "y",
            &[
                ("a".into(), vec![(1e3, 0.5), (1e6, 800.0)]),
                ("b".into(), vec![(1e3, 0.0)]),
            ],
            Some(&Reference {
                y: 10.0,
                label: "goal".into(),
            }),
        );
        assert!(line.contains("stroke-dasharray"));
        assert!(line.starts_with("<svg") && line.ends_with("</svg>\n"));
        assert!(line.contains("t &lt;1&gt;"));
        assert_eq!(line.matches("<polyline").count(), 2);
        let bars = bar_chart("b", "ops/s", &["p1".into()], &[("s".into(), vec![1234.0])]);
        assert_eq!(bars.matches("<rect x=").count(), 1 + 1 + 1); // frame, bar, legend
        assert_eq!(nice_step(1000.0), 200.0);
    }
}
