//! Figures (PNG, with the plotters crate): written to a temporary name and renamed, like every output.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};

const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Makes the embedded DejaVu Sans the "sans-serif" family (once per process).
pub fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn plot_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::bad_input(path.display().to_string(), format!("drawing the figure: {e}"))
}

/// One curve, with an optional horizontal reference line drawn dashed in the same colour (e.g. its noise level).
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub reference: Option<f64>,
}

/// A line chart with an optional log y axis, saved as PNG.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
) -> Result<()> {
    line_chart_axes(path, title, x_label, y_label, series, Axes { log_x: false, log_y })
}

/// Which axes of a chart are logarithmic (a log axis drops the points that are not positive on it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Axes {
    pub log_x: bool,
    pub log_y: bool,
}

/// A line chart with optional log x and y axes, saved as PNG.
pub fn line_chart_axes(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    axes: Axes,
) -> Result<()> {
    let Axes { log_x, log_y } = axes;
    register_font();
    let tmp = crate::io::temporary_path(path)?.with_extension("png");
    {
        let root = BitMapBackend::new(&tmp, (960, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
        let all = series.iter().flat_map(|s| s.points.iter()).chain(std::iter::empty());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in all {
            if y.is_finite() && (!log_y || y > 0.0) && (!log_x || x > 0.0) {
                x0 = x0.min(x);
                x1 = x1.max(x);
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
        }
        for y in series.iter().filter_map(|s| s.reference) {
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if !(x0.is_finite() && y0.is_finite()) {
            return Err(plot_error(path, "no finite values to draw"));
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        if y1 <= y0 {
            y1 = y0 + y0.abs().max(1.0) * 0.1;
        }
        // Whole numbers for ranks and step counts, decimals for short ranges (cosines, times).
        let decimals = if log_x {
            3
        } else if x1 - x0 >= 20.0 {
            0
        } else if x1 - x0 >= 2.0 {
            1
        } else {
            2
        };
        let mut chart = ChartBuilder::on(&root);
        chart.caption(title, ("sans-serif", 24)).margin(16).x_label_area_size(48).y_label_area_size(80);
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart.map_err(|e| plot_error(path, e))?;
                chart
                    .configure_mesh()
                    .x_label_formatter(&|x| {
                        if log_x {
                            // Significant digits on a log axis (0.01, 0.03, 0.3), whole numbers above 10.
                            let text = format!("{x:.decimals$}");
                            let text = text.trim_end_matches('0').trim_end_matches('.').to_string();
                            if text.is_empty() {
                                "0".into()
                            } else {
                                text
                            }
                        } else {
                            format!("{x:.decimals$}")
                        }
                    })
                    .x_desc(x_label)
                    .y_desc(y_label)
                    .label_style(("sans-serif", 14))
                    .draw()
                    .map_err(|e| plot_error(path, e))?;
                for (i, s) in series.iter().enumerate() {
                    let color = Palette99::pick(i).to_rgba();
                    let drawn = chart
                        .draw_series(LineSeries::new(
                            s.points
                                .iter()
                                .copied()
                                .filter(|(x, y)| y.is_finite() && (!log_y || *y > 0.0) && (!log_x || *x > 0.0)),
                            color.stroke_width(2),
                        ))
                        .map_err(|e| plot_error(path, e))?;
                    // An empty label keeps the curve out of the legend (e.g. the second of many like it).
                    if !s.label.is_empty() {
                        drawn
                            .label(s.label.clone())
                            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                    }
                    if let Some(level) = s.reference {
                        chart
                            .draw_series(DashedLineSeries::new(
                                vec![(x0, level), (x1, level)],
                                8,
                                5,
                                color.stroke_width(1),
                            ))
                            .map_err(|e| plot_error(path, e))?;
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
            }};
        }
        let pad = 0.05 * (y1 - y0);
        match (log_x, log_y) {
            (false, true) => draw!(chart.build_cartesian_2d(x0..x1, (y0 * 0.8..y1 * 1.25).log_scale())),
            (false, false) => draw!(chart.build_cartesian_2d(x0..x1, y0 - pad..y1 + pad)),
            (true, true) => {
                draw!(chart.build_cartesian_2d((x0 * 0.9..x1 * 1.1).log_scale(), (y0 * 0.8..y1 * 1.25).log_scale()))
            }
            (true, false) => draw!(chart.build_cartesian_2d((x0 * 0.9..x1 * 1.1).log_scale(), y0 - pad..y1 + pad)),
        }
        root.present().map_err(|e| plot_error(path, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// A histogram of `values` over [lo, hi] in `bins` bins, as the points of a step curve (for [`line_chart`]).
pub fn histogram_points(values: &[f64], bins: usize, lo: f64, hi: f64) -> Vec<(f64, f64)> {
    let bins = bins.max(1);
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &v in values.iter().filter(|v| v.is_finite()) {
        let i = (((v - lo) / width).floor().max(0.0) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let mut points = Vec::with_capacity(2 * bins);
    for (i, &c) in counts.iter().enumerate() {
        points.push((lo + i as f64 * width, c as f64));
        points.push((lo + (i + 1) as f64 * width, c as f64));
    }
    points
}

/// One set of points of a scatter chart.
pub struct PointSet {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Marker radius in pixels.
    pub size: u32,
}

/// A scatter chart (equal-aspect data axes are the caller's business: pass a square range when it matters).
pub fn scatter_chart(
    path: &Path,
    title: &str,
    sets: &[PointSet],
    range: Option<((f64, f64), (f64, f64))>,
) -> Result<()> {
    scatter_chart_labelled(path, title, ("", ""), sets, range)
}

/// [`scatter_chart`] with axis labels (x, y).
pub fn scatter_chart_labelled(
    path: &Path,
    title: &str,
    labels: (&str, &str),
    sets: &[PointSet],
    range: Option<((f64, f64), (f64, f64))>,
) -> Result<()> {
    register_font();
    let tmp = crate::io::temporary_path(path)?.with_extension("png");
    {
        let root = BitMapBackend::new(&tmp, (800, 800)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
        let ((x0, x1), (y0, y1)) = match range {
            Some(r) => r,
            None => {
                let finite = sets.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
                let (mut x0, mut x1, mut y0, mut y1) =
                    (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
                for &(x, y) in finite {
                    x0 = x0.min(x);
                    x1 = x1.max(x);
                    y0 = y0.min(y);
                    y1 = y1.max(y);
                }
                if !x0.is_finite() {
                    return Err(plot_error(path, "no finite points to draw"));
                }
                let pad = 0.05 * (x1 - x0).max(y1 - y0).max(1e-9);
                ((x0 - pad, x1 + pad), (y0 - pad, y1 + pad))
            }
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(if labels.0.is_empty() { 40 } else { 56 })
            .y_label_area_size(if labels.1.is_empty() { 56 } else { 72 })
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| plot_error(path, e))?;
        chart
            .configure_mesh()
            .x_desc(labels.0)
            .y_desc(labels.1)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| plot_error(path, e))?;
        for (i, set) in sets.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let size = set.size;
            chart
                .draw_series(
                    set.points
                        .iter()
                        .filter(|(x, y)| x.is_finite() && y.is_finite())
                        .map(move |&(x, y)| Circle::new((x, y), size, color.filled())),
                )
                .map_err(|e| plot_error(path, e))?
                .label(set.label.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| plot_error(path, e))?;
        root.present().map_err(|e| plot_error(path, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Grey-scale images as a grid (ink dark on white: `range.0` white, `range.1` black, values clipped), saved as PNG.
/// `images` holds `count` images of `height × width` values, row-major, one after the other.
pub fn image_grid(
    path: &Path,
    title: &str,
    images: &[f32],
    shape: (usize, usize),
    columns: usize,
    range: (f64, f64),
) -> Result<()> {
    let (height, width) = shape;
    let size = height * width;
    if size == 0 || images.is_empty() || !images.len().is_multiple_of(size) || columns == 0 {
        return Err(plot_error(path, format!("{} values do not form {height}×{width} images", images.len())));
    }
    register_font();
    let count = images.len() / size;
    let rows = count.div_ceil(columns);
    // Each pixel a square of `cell` device pixels, a gap of two pixels between images.
    let cell = 6u32;
    let (gap, header) = (2u32, 36u32);
    let image_w = width as u32 * cell;
    let image_h = height as u32 * cell;
    let total_w = (columns as u32 * (image_w + gap) + gap).max(320);
    let total_h = rows as u32 * (image_h + gap) + gap + header;
    let tmp = crate::io::temporary_path(path)?.with_extension("png");
    {
        let root = BitMapBackend::new(&tmp, (total_w, total_h)).into_drawing_area();
        root.fill(&RGBColor(200, 200, 200)).map_err(|e| plot_error(path, e))?;
        root.draw(&Text::new(title.to_string(), (8, 8), ("sans-serif", 18).into_font()))
            .map_err(|e| plot_error(path, e))?;
        let span = (range.1 - range.0).max(f64::MIN_POSITIVE);
        for (index, image) in images.chunks(size).enumerate() {
            let (r, c) = (index / columns, index % columns);
            let left = gap + c as u32 * (image_w + gap);
            let top = header + gap + r as u32 * (image_h + gap);
            for (p, &value) in image.iter().enumerate() {
                let ink = ((value as f64 - range.0) / span).clamp(0.0, 1.0);
                let level = (255.0 * (1.0 - ink)).round() as u8;
                let (x, y) = (left + (p % width) as u32 * cell, top + (p / width) as u32 * cell);
                root.draw(&Rectangle::new(
                    [(x as i32, y as i32), ((x + cell) as i32, (y + cell) as i32)],
                    RGBColor(level, level, level).filled(),
                ))
                .map_err(|e| plot_error(path, e))?;
            }
        }
        root.present().map_err(|e| plot_error(path, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// A report written as Markdown and as a standalone HTML page from the same blocks.
#[derive(Default)]
pub struct Document {
    blocks: Vec<Block>,
}

enum Block {
    Heading(usize, String),
    Paragraph(String),
    Table(Vec<String>, Vec<Vec<String>>),
    Figure(String, String),
}

impl Document {
    pub fn heading(&mut self, level: usize, text: impl Into<String>) {
        self.blocks.push(Block::Heading(level, text.into()));
    }
    pub fn paragraph(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Paragraph(text.into()));
    }
    pub fn table(&mut self, header: &[&str], rows: Vec<Vec<String>>) {
        self.blocks.push(Block::Table(header.iter().map(|h| h.to_string()).collect(), rows));
    }
    /// A figure by its file name (relative to the report) and caption.
    pub fn figure(&mut self, file: impl Into<String>, caption: impl Into<String>) {
        self.blocks.push(Block::Figure(file.into(), caption.into()));
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for block in &self.blocks {
            match block {
                Block::Heading(level, text) => out.push_str(&format!("{} {text}\n\n", "#".repeat(*level))),
                Block::Paragraph(text) => out.push_str(&format!("{text}\n\n")),
                Block::Table(header, rows) => {
                    // A `|` inside a cell (|cos|, norms) would end it.
                    let cells =
                        |row: &[String]| row.iter().map(|c| c.replace('|', "\\|")).collect::<Vec<_>>().join(" | ");
                    out.push_str(&format!("| {} |\n", cells(header)));
                    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
                    for row in rows {
                        out.push_str(&format!("| {} |\n", cells(row)));
                    }
                    out.push('\n');
                }
                Block::Figure(file, caption) => out.push_str(&format!("![{caption}]({file})\n\n*{caption}*\n\n")),
            }
        }
        out
    }

    pub fn html(&self, title: &str) -> String {
        let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        // Inline code spans (`...`), bold (**...**) and links ([text](file)) are the only Markdown the paragraphs
        // and tables use.
        let inline = |s: &str| {
            let mut out = String::new();
            for (i, part) in escape(s).split('`').enumerate() {
                if i % 2 == 1 {
                    out.push_str(&format!("<code>{part}</code>"));
                } else {
                    for (j, piece) in part.split("**").enumerate() {
                        out.push_str(&if j % 2 == 1 { format!("<b>{piece}</b>") } else { html_links(piece) });
                    }
                }
            }
            out
        };
        let mut out = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\n<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto;line-height:1.45}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}}th{{background:#eee}}img{{max-width:100%}}figcaption{{font-style:italic;color:#444}}code{{background:#f3f3f3}}</style></head><body>\n",
            escape(title)
        );
        for block in &self.blocks {
            match block {
                Block::Heading(level, text) => out.push_str(&format!("<h{level}>{}</h{level}>\n", inline(text))),
                Block::Paragraph(text) => out.push_str(&format!("<p>{}</p>\n", inline(text))),
                Block::Table(header, rows) => {
                    out.push_str("<table><tr>");
                    for h in header {
                        out.push_str(&format!("<th>{}</th>", inline(h)));
                    }
                    out.push_str("</tr>\n");
                    for row in rows {
                        out.push_str("<tr>");
                        for cell in row {
                            out.push_str(&format!("<td>{}</td>", inline(cell)));
                        }
                        out.push_str("</tr>\n");
                    }
                    out.push_str("</table>\n");
                }
                Block::Figure(file, caption) => out.push_str(&format!(
                    "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>\n",
                    escape(file),
                    escape(caption),
                    inline(caption)
                )),
            }
        }
        out.push_str("</body></html>\n");
        out
    }
}

/// Markdown links `[text](target)` as HTML anchors; everything else unchanged (the text is already escaped).
fn html_links(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find("](") else { break };
        let Some(end) = after[close + 2..].find(')') else { break };
        let (label, target) = (&after[..close], &after[close + 2..close + 2 + end]);
        if label.contains('[') || target.contains(' ') {
            // Not a link (e.g. an interval "[0, 1]"): keep the bracket and go on after it.
            out.push_str(&rest[..open + 1]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..open]);
        out.push_str(&format!("<a href=\"{target}\">{label}</a>"));
        rest = &after[close + 2 + end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_links_become_anchors_in_html() {
        let mut doc = Document::default();
        doc.table(&["claim", "measured"], vec![vec!["a".into(), "0.9 ([figure](unet/a.png)) in [0, 1]".into()]]);
        let html = doc.html("t");
        assert!(html.contains("0.9 (<a href=\"unet/a.png\">figure</a>) in [0, 1]"), "{html}");
        assert_eq!(html_links("no links [here"), "no links [here");
    }
}
