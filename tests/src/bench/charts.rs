//! PNG charts of the runner's results (plotters, bitmap backend): `throughput.png` (QPS per workload,
//! one panel per cluster size) and `latency-<n>m.png` (p50/p90/p99/p99.9 per workload), etcd and
//! modkv side by side, log scales. Text is drawn with a system TrueType font (DejaVu or Liberation).

use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

use super::report::{median, sizes, values};

const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];
const ETCD: RGBColor = RGBColor(0x41, 0x7d, 0xc1);
const MODKV: RGBColor = RGBColor(0xe3, 0x7b, 0x22);
const PERCENTILES: [&str; 4] = ["p50", "p90", "p99", "p99.9"];

type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Draws the charts into `out`; returns their file names.
pub fn draw(r: &Value, out: &Path) -> Result<Vec<String>, String> {
    let font = FONTS
        .iter()
        .find_map(|f| std::fs::read(f).ok())
        .ok_or("no TrueType font found (apt install fonts-dejavu-core)")?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(font.into_boxed_slice()))
        .map_err(|_| "the font could not be read")?;
    let mut files = vec!["throughput.png".to_string()];
    throughput(r, &out.join(&files[0])).map_err(|e| format!("throughput.png: {e}"))?;
    for n in sizes(r) {
        let f = format!("latency-{n}m.png");
        latency(r, n, &out.join(&f)).map_err(|e| format!("{f}: {e}"))?;
        files.push(f);
    }
    Ok(files)
}

/// (name, short name) of each workload.
fn workloads(r: &Value) -> Vec<(String, String)> {
    r["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| (w["name"].as_str().unwrap_or("").to_string(), w["short"].as_str().unwrap_or("").to_string()))
        .collect()
}

/// A log range from 0.8× the smallest to 4× the largest of `v` (room for the legend above the bars).
fn log_bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let v: Vec<f64> = v.filter(|x| *x > 0.0).collect();
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(0.0, f64::max);
    if v.is_empty() {
        (0.1, 1.0)
    } else {
        (lo * 0.8, hi * 4.0)
    }
}

/// One panel of grouped bars: `groups` labels on x, per group etcd's and modkv's value.
fn bars(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    groups: &[String],
    data: &[(f64, f64)],
    legend: bool,
) -> DrawResult<()> {
    let (lo, hi) = log_bounds(data.iter().flat_map(|d| [d.0, d.1]));
    let n = groups.len();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, (lo..hi).log_scale())?;
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            groups.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&label)
        .y_labels(6)
        .y_label_formatter(&|v| number(*v))
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .y_desc(y_desc)
        .label_style(("sans-serif", 13))
        .draw()?;
    for (k, color, name) in [(0, ETCD, "etcd 3.4"), (1, MODKV, "modkv")] {
        let rects = data.iter().enumerate().filter_map(|(i, d)| {
            let v = if k == 0 { d.0 } else { d.1 };
            let x0 = i as f64 - 0.4 + 0.4 * k as f64;
            (v > 0.0).then(|| Rectangle::new([(x0, lo), (x0 + 0.38, v)], color.filled()))
        });
        chart
            .draw_series(rects)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    if !legend {
        return Ok(());
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

/// `v` without needless decimals: 20000, 150, 2.5, 0.12.
fn number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{}", (v * 10.0).round() / 10.0)
    } else {
        format!("{}", (v * 100.0).round() / 100.0)
    }
}

fn throughput(r: &Value, path: &Path) -> DrawResult<()> {
    let ws = workloads(r);
    let ns = sizes(r);
    let root = BitMapBackend::new(path, (1100, 380 * ns.len().max(1) as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((ns.len().max(1), 1));
    for (area, &n) in panels.iter().zip(&ns) {
        let data: Vec<(f64, f64)> = ws
            .iter()
            .map(|(w, _)| {
                let f = |k: &str| median(values(&r["samples"], k, n, Some(w.as_str()), "/main/qps"));
                (f("etcd"), f("modkv"))
            })
            .collect();
        let labels: Vec<String> = ws.iter().map(|w| w.1.clone()).collect();
        let caption =
            format!("Throughput, {n} member{} (requests/s, median, log scale)", if n == 1 { "" } else { "s" });
        bars(area, &caption, "requests/s", &labels, &data, true)?;
    }
    root.present()?;
    Ok(())
}

fn latency(r: &Value, n: u64, path: &Path) -> DrawResult<()> {
    let ws = workloads(r);
    let cols = 4;
    let rows = ws.len().div_ceil(cols).max(1);
    let root = BitMapBackend::new(path, (1400, 330 * rows as u32 + 40)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(40);
    title.titled(
        &format!(
            "Latency percentiles, {n} member{}: etcd 3.4 blue, modkv orange (ms, median over rounds, log scale)",
            if n == 1 { "" } else { "s" }
        ),
        ("sans-serif", 20),
    )?;
    let panels = body.split_evenly((rows, cols));
    for (area, (w, short)) in panels.iter().zip(&ws) {
        let data: Vec<(f64, f64)> = PERCENTILES
            .iter()
            .map(|p| {
                let f = |k: &str| median(values(&r["samples"], k, n, Some(w.as_str()), &format!("/main/{p}")));
                (f("etcd"), f("modkv"))
            })
            .collect();
        let labels: Vec<String> = PERCENTILES.iter().map(|p| p.to_string()).collect();
        bars(area, short, "ms", &labels, &data, false)?;
    }
    root.present()?;
    Ok(())
}
