//! The report's charts, drawn as SVG with plotters: the faults shaded
//! behind throughput and latency over time, and bars for stale reads and
//! availability per level.

use plotters::prelude::*;

use crate::LabError;
use crate::measure::{Figures, Window};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 340;
const FAULT_SHADE: RGBColor = RGBColor(253, 224, 221);
const FONT: &str = "sans-serif";

/// A level's colour.
fn color(level: &str) -> RGBColor {
    match level {
        "ONE" | "LOCAL_ONE" => RGBColor(230, 120, 20),
        "QUORUM" | "LOCAL_QUORUM" | "EACH_QUORUM" => RGBColor(40, 100, 200),
        "ALL" => RGBColor(40, 150, 70),
        "ANY" => RGBColor(150, 80, 180),
        _ => RGBColor(90, 90, 90),
    }
}

fn chart_error(chart: &'static str) -> impl Fn(String) -> LabError {
    move |why| LabError::Chart { chart, why }
}

/// Operations per second by level (successful, solid; failed, dashed as
/// thin lines), the faults shaded, the moment the replicas agreed marked.
pub fn throughput(figures: &Figures) -> Result<String, LabError> {
    let name = "throughput";
    draw(name, |root| {
        let seconds = figures.timeline.len().max(1) as f64;
        let levels: Vec<&str> = figures.levels.iter().map(|l| l.level.as_str()).collect();
        let top = figures
            .timeline
            .iter()
            .flat_map(|s| s.ok.values().chain(s.failed.values()))
            .copied()
            .max()
            .unwrap_or(1) as f64
            * 1.5;
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Operations per second, by level (faults shaded)",
                (FONT, 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..seconds, 0f64..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("operations/s")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        shade(&mut chart, &figures.windows, top)?;
        if let Some(after) = figures.convergence.converged_after_ms {
            let at = (figures.convergence.healed_ms + after) as f64 / 1000.0;
            chart
                .draw_series(LineSeries::new(
                    [(at, 0.0), (at, top)],
                    BLACK.stroke_width(1),
                ))
                .map_err(|e| e.to_string())?
                .label("replicas agree")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK));
        }
        for level in levels {
            let c = color(level);
            let points = |failed: bool| {
                figures.timeline.iter().map(move |s| {
                    let map = if failed { &s.failed } else { &s.ok };
                    (s.second as f64 + 0.5, *map.get(level).unwrap_or(&0) as f64)
                })
            };
            chart
                .draw_series(LineSeries::new(points(false), c.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(format!("{level} ok"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2)));
            chart
                .draw_series(DashedLineSeries::new(points(true), 5, 4, c.stroke_width(1)))
                .map_err(|e| e.to_string())?
                .label(format!("{level} failed"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(1)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 12))
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    })
    .map_err(chart_error(name))
}

/// Latency of the operations that completed each second, p50 and p99.
pub fn latency(figures: &Figures) -> Result<String, LabError> {
    let name = "latency";
    draw(name, |root| {
        let seconds = figures.timeline.len().max(1) as f64;
        let top = figures
            .timeline
            .iter()
            .map(|s| s.latency_ms[1])
            .fold(1.0, f64::max)
            * 1.3;
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Latency of successful operations, to the millisecond (faults shaded)",
                (FONT, 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..seconds, 0f64..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("milliseconds")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        shade(&mut chart, &figures.windows, top)?;
        for (i, label, c) in [
            (0, "p50", RGBColor(40, 100, 200)),
            (1, "p99", RGBColor(200, 40, 40)),
        ] {
            let points = figures
                .timeline
                .iter()
                .filter(|s| s.latency_ms[1] > 0.0)
                .map(|s| (s.second as f64 + 0.5, s.latency_ms[i]));
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 12))
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    })
    .map_err(chart_error(name))
}

/// A group of bars per level: `bars(level)` gives each bar's label and
/// value (a percentage, or `None` for no data).
fn grouped_bars(
    name: &'static str,
    caption: &str,
    figures: &Figures,
    series: &[(&str, RGBColor)],
    bars: impl Fn(&crate::measure::LevelFigures) -> Vec<Option<f64>>,
) -> Result<String, LabError> {
    draw(name, |root| {
        let levels = &figures.levels;
        let groups = levels.len().max(1) as f64;
        let mut chart = ChartBuilder::on(root)
            .caption(caption, (FONT, 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..groups, 0f64..125f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(levels.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 0.01 && i < levels.len() {
                    levels[i].level.clone()
                } else {
                    String::new()
                }
            })
            .y_desc("percent")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        let width = 0.8 / series.len() as f64;
        for (s, (label, c)) in series.iter().enumerate() {
            let c = *c;
            let mut rectangles = Vec::new();
            let mut texts = Vec::new();
            for (i, level) in levels.iter().enumerate() {
                let Some(value) = bars(level).get(s).copied().flatten() else {
                    continue;
                };
                let x0 = i as f64 + 0.1 + s as f64 * width;
                rectangles.push(Rectangle::new(
                    [(x0, 0.0), (x0 + width * 0.9, value)],
                    c.filled(),
                ));
                texts.push(Text::new(
                    format!("{value:.1}"),
                    (x0 + width * 0.1, value + 6.0),
                    (FONT, 11),
                ));
            }
            chart
                .draw_series(rectangles)
                .map_err(|e| e.to_string())?
                .label(*label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
            chart.draw_series(texts).map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 12))
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    })
    .map_err(chart_error(name))
}

/// Stale reads per level, during the faults and outside them.
pub fn staleness(figures: &Figures) -> Result<String, LabError> {
    grouped_bars(
        "stale reads",
        "Stale reads: reads missing a write acknowledged before they began",
        figures,
        &[
            ("during the faults", RGBColor(200, 60, 50)),
            ("outside the faults", RGBColor(150, 150, 150)),
        ],
        |level| {
            vec![
                level.during_faults.percent(),
                level.outside_faults.percent(),
            ]
        },
    )
}

/// Operations that succeeded per level and side, while the faults lasted.
pub fn availability(figures: &Figures) -> Result<String, LabError> {
    let palette = [
        RGBColor(40, 100, 200),
        RGBColor(230, 120, 20),
        RGBColor(40, 150, 70),
        RGBColor(150, 80, 180),
    ];
    let sides: Vec<String> = figures
        .levels
        .first()
        .map(|l| {
            l.sides
                .iter()
                .map(|s| format!("clients of {}", s.nodes.join(",")))
                .collect()
        })
        .unwrap_or_default();
    let series: Vec<(&str, RGBColor)> = sides
        .iter()
        .zip(palette.iter().cycle())
        .map(|(s, c)| (s.as_str(), *c))
        .collect();
    grouped_bars(
        "availability",
        "Operations that succeeded while the faults lasted, per side",
        figures,
        &series,
        |level| {
            level
                .sides
                .iter()
                .map(|side| {
                    let mut all = side.reads;
                    all.ok += side.writes.ok;
                    all.failed += side.writes.failed;
                    all.percent_ok()
                })
                .collect()
        },
    )
}

/// Shades the fault windows.
fn shade<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    windows: &[Window],
    top: f64,
) -> Result<(), String> {
    chart
        .draw_series(windows.iter().map(|w| {
            Rectangle::new(
                [
                    (w.start_ms as f64 / 1000.0, 0.0),
                    (w.end_ms as f64 / 1000.0, top),
                ],
                FAULT_SHADE.filled(),
            )
        }))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(windows.iter().map(|w| {
            Text::new(
                w.what.clone(),
                (w.start_ms as f64 / 1000.0 + 0.2, top * 0.97),
                (FONT, 12),
            )
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Draws a chart into an SVG string.
fn draw(
    _name: &'static str,
    paint: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        paint(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
