//! One-panel figures for the claims of arXiv 2508.07581 and 2602.06021: points and lines on linear or log axes,
//! with labelled axes (the report's own charts have no log x axis nor axis labels on scatters).

use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use scorelens::report::register_font;
use scorelens::{Error, Result};

/// Points (markers) or a line.
pub(crate) struct Layer {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Draw as a line (dashed when `dashed`) instead of markers.
    pub line: bool,
    pub dashed: bool,
}

impl Layer {
    pub fn points(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Layer { label: label.into(), points, line: false, dashed: false }
    }
    pub fn line(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Layer { label: label.into(), points, line: true, dashed: false }
    }
    pub fn dashed(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Layer { label: label.into(), points, line: true, dashed: true }
    }
}

pub(crate) struct Panel<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub log_x: bool,
    pub log_y: bool,
}

fn plot_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::bad_input(path.display().to_string(), format!("drawing the figure: {e}"))
}

fn range(values: impl Iterator<Item = f64>, log: bool) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return None;
    }
    Some(if log {
        let (lo, hi) = (lo * 0.7, hi * 1.4);
        if hi <= lo * 1.01 {
            (lo * 0.5, hi * 2.0)
        } else {
            (lo, hi)
        }
    } else {
        let pad = 0.06 * (hi - lo).max(hi.abs().max(1e-12) * 1e-3);
        (lo - pad, hi + pad)
    })
}

fn draw<X, Y>(path: &Path, panel: &Panel, layers: &[Layer], x: X, y: Y) -> Result<()>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let tmp = scorelens::io::temporary_path(path)?.with_extension("png");
    {
        let root = BitMapBackend::new(&tmp, (900, 680)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(panel.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(52)
            .y_label_area_size(84)
            .build_cartesian_2d(x, y)
            .map_err(|e| plot_error(path, e))?;
        chart
            .configure_mesh()
            .x_desc(panel.x_label)
            .y_desc(panel.y_label)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| plot_error(path, e))?;
        let (log_x, log_y) = (panel.log_x, panel.log_y);
        let keep =
            move |&(a, b): &(f64, f64)| a.is_finite() && b.is_finite() && (!log_x || a > 0.0) && (!log_y || b > 0.0);
        for (i, layer) in layers.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = layer.points.iter().copied().filter(keep).collect();
            if layer.line && layer.dashed {
                chart
                    .draw_series(DashedLineSeries::new(pts, 8, 5, color.stroke_width(2)))
                    .map_err(|e| plot_error(path, e))?
                    .label(layer.label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(1)));
            } else if layer.line {
                chart
                    .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                    .map_err(|e| plot_error(path, e))?
                    .label(layer.label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            } else {
                chart
                    .draw_series(pts.into_iter().map(move |p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| plot_error(path, e))?
                    .label(layer.label.clone())
                    .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| plot_error(path, e))?;
        root.present().map_err(|e| plot_error(path, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Draws the layers in one panel.
pub(crate) fn panel(path: &Path, panel: &Panel, layers: &[Layer]) -> Result<()> {
    register_font();
    let xs = range(layers.iter().flat_map(|l| l.points.iter().map(|p| p.0)), panel.log_x);
    let ys = range(layers.iter().flat_map(|l| l.points.iter().map(|p| p.1)), panel.log_y);
    let (Some((x0, x1)), Some((y0, y1))) = (xs, ys) else {
        return Err(plot_error(path, "no finite values to draw"));
    };
    match (panel.log_x, panel.log_y) {
        (false, false) => draw(path, panel, layers, x0..x1, y0..y1),
        (true, false) => draw(path, panel, layers, (x0..x1).log_scale(), y0..y1),
        (false, true) => draw(path, panel, layers, x0..x1, (y0..y1).log_scale()),
        (true, true) => draw(path, panel, layers, (x0..x1).log_scale(), (y0..y1).log_scale()),
    }
}
