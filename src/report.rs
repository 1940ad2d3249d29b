//! Figures (PNG, with the plotters crate): written to a temporary name and renamed, like every output.

use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
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

/// How a [`Layer`] is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mark {
    /// Filled circles of this radius in pixels.
    Points(u32),
    Line,
    Dashed,
}

/// One set of points of a [`panel`]: markers, a line or a dashed line.
pub struct Layer {
    /// The legend entry; an empty label keeps the layer out of the legend (e.g. the second of many like it).
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub mark: Mark,
    /// The colour; `None`: the palette's colour of the layer's position.
    pub colour: Option<RGBAColor>,
}

impl Layer {
    pub fn points(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Layer { label: label.into(), points, mark: Mark::Points(3), colour: None }
    }
    pub fn line(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Layer { label: label.into(), points, mark: Mark::Line, colour: None }
    }
    pub fn dashed(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Layer { label: label.into(), points, mark: Mark::Dashed, colour: None }
    }
    /// Markers of radius `pixels` (for a layer made by [`Layer::points`]).
    pub fn size(mut self, pixels: u32) -> Self {
        if let Mark::Points(_) = self.mark {
            self.mark = Mark::Points(pixels);
        }
        self
    }
    pub fn colour(mut self, colour: RGBAColor) -> Self {
        self.colour = Some(colour);
        self
    }
}

/// The palette's `i`-th colour (the colour [`panel`] gives the `i`-th layer by default): the ten "tab10" colours of
/// matplotlib, all dark enough to read on white, then again.
pub fn palette(i: usize) -> RGBAColor {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = TAB10[i % TAB10.len()];
    RGBColor(r, g, b).to_rgba()
}

/// Which axes of a chart are logarithmic (a log axis drops the points that are not positive on it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Axes {
    pub log_x: bool,
    pub log_y: bool,
}

/// The frame of a [`panel`]: title, axis labels, log axes, size in pixels, and the ranges (fitted to the points
/// when not given).
pub struct Panel<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub axes: Axes,
    pub size: (u32, u32),
    /// ((x0, x1), (y0, y1)); `None`: the points' range, padded.
    pub range: Option<((f64, f64), (f64, f64))>,
}

impl<'a> Panel<'a> {
    /// A 900 × 680 panel with linear axes fitted to the points.
    pub fn new(title: &'a str, x_label: &'a str, y_label: &'a str) -> Self {
        Panel { title, x_label, y_label, axes: Axes::default(), size: (900, 680), range: None }
    }
    pub fn log(mut self, log_x: bool, log_y: bool) -> Self {
        self.axes = Axes { log_x, log_y };
        self
    }
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.size = (width, height);
        self
    }
    pub fn range(mut self, x: (f64, f64), y: (f64, f64)) -> Self {
        self.range = Some((x, y));
        self
    }
}

/// A value's position on an axis: itself, or its log10 on a log axis (`None` where a log axis cannot show it).
fn axis_position(v: f64, log: bool) -> Option<f64> {
    match (v.is_finite(), log) {
        (false, _) => None,
        (true, false) => Some(v),
        (true, true) => (v > 0.0).then(|| v.log10()),
    }
}

/// The padded range of the positions (see [`axis_position`]) of `values` on an axis.
fn fitted_range(values: impl Iterator<Item = f64>, log: bool) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in values.filter_map(|v| axis_position(v, log)) {
        lo = lo.min(p);
        hi = hi.max(p);
    }
    if !lo.is_finite() {
        return None;
    }
    // A single value: a span around it (a decade on a log axis).
    let span = if hi > lo {
        hi - lo
    } else if log {
        1.0
    } else {
        lo.abs().max(1.0) * 0.2
    };
    let pad = if hi > lo { 0.05 * span } else { 0.5 * span };
    Some((lo - pad, hi + pad))
}

/// A tick value as its label: the fewest decimals that give it (0.3, not 0.30000000000000004), and powers of ten
/// for the very small and the very large (1e-4, 2.5e6).
pub fn tick_label(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let close = |text: &str| text.parse::<f64>().is_ok_and(|w| (w - v).abs() <= 1e-9 * v.abs());
    if (1e-3..1e5).contains(&v.abs()) {
        for decimals in 0..=9 {
            let text = format!("{v:.decimals$}");
            if close(&text) {
                return text;
            }
        }
    }
    for digits in 0..=6 {
        let text = format!("{v:.digits$e}");
        if close(&text) {
            return text;
        }
    }
    format!("{v:e}")
}

/// Minimum free space between two tick labels, in pixels.
const TICK_GAP: f64 = 10.0;

/// Multiples of a 1-2-5 step in [lo, hi], from the finest step that gives at most `most` ticks upward.
fn linear_candidates(lo: f64, hi: f64, most: usize) -> Vec<Vec<f64>> {
    let span = hi - lo;
    if !(span > 0.0) {
        return vec![vec![lo]];
    }
    let mut step = 10f64.powf((span / most as f64).log10().floor());
    let mut out = Vec::new();
    for _ in 0..40 {
        for m in [1.0, 2.0, 5.0] {
            let s = step * m;
            let ticks: Vec<f64> = ((lo / s).ceil() as i64..=(hi / s).floor() as i64).map(|k| k as f64 * s).collect();
            let last = ticks.len() <= 1;
            if !ticks.is_empty() && ticks.len() <= most {
                out.push(ticks);
            }
            if last {
                return out;
            }
        }
        step *= 10.0;
    }
    out
}

/// Ticks of a log axis over [lo, hi] (values, lo > 0), densest first: mantissas 1–9 of each decade, then 1-2-5, 1-3,
/// 1, then every 2nd, 3rd, 5th, 10th … decade.
fn log_candidates(lo: f64, hi: f64) -> Vec<Vec<f64>> {
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let within = |v: &f64| *v >= lo * (1.0 - 1e-12) && *v <= hi * (1.0 + 1e-12);
    let of = |mantissas: &[f64]| -> Vec<f64> {
        (first..=last).flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e))).filter(within).collect()
    };
    let mut out =
        vec![of(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]), of(&[1.0, 2.0, 5.0]), of(&[1.0, 3.0]), of(&[1.0])];
    for every in [2, 3, 5, 10, 20, 50] {
        out.push((first..=last).filter(|e| e.rem_euclid(every) == 0).map(|e| 10f64.powi(e)).filter(within).collect());
    }
    out.retain(|t| !t.is_empty());
    out
}

/// Whether labels at `ticks` (positions by `position`, in pixels along the axis; extents by `extent`, pixels along
/// the axis) keep [`TICK_GAP`] apart.
fn labels_fit(ticks: &[f64], position: &dyn Fn(f64) -> f64, extent: &dyn Fn(&str) -> f64) -> bool {
    ticks.windows(2).all(|w| {
        let space = (position(w[1]) - position(w[0])).abs();
        space >= (extent(&tick_label(w[0])) + extent(&tick_label(w[1]))) / 2.0 + TICK_GAP
    })
}

/// The ticks of an axis whose range is [lo, hi] in positions (log10 of the values on a log axis) over `pixels`:
/// the densest usual choice whose labels (`extent`: a label's size along the axis in pixels) do not overlap. On a
/// log axis the 1-2-5 ticks are preferred to all nine mantissas when they give three or more, and a span shorter
/// than a decade falls back to a linear step.
pub fn axis_ticks(lo: f64, hi: f64, log: bool, pixels: f64, extent: &dyn Fn(&str) -> f64) -> Vec<f64> {
    let position = move |v: f64| {
        let p = axis_position(v, log).unwrap_or(lo);
        (p - lo) / (hi - lo).max(f64::MIN_POSITIVE) * pixels
    };
    // At most a tick every 60 pixels: a readable axis, not a ruler.
    let most = ((pixels / 60.0) as usize).max(2);
    let mut candidates = if log {
        let (a, b) = (10f64.powf(lo), 10f64.powf(hi));
        let mut c = log_candidates(a, b);
        if c.len() > 1 && c[1].len() >= 3 {
            c.remove(0);
        }
        c.retain(|t| t.len() >= 2);
        if c.first().is_none_or(|t| t.len() < 3) {
            c.splice(0..0, linear_candidates(a, b, most).into_iter().filter(|t| t.len() >= 2));
        }
        c
    } else {
        linear_candidates(lo, hi, most)
    };
    candidates.retain(|t| t.iter().all(|&v| axis_position(v, log).is_some()));
    match candidates.iter().find(|t| labels_fit(t, &position, extent)) {
        Some(t) => t.clone(),
        // Nothing fits: the sparsest choice, cut to its first and last tick.
        None => match candidates.last() {
            Some(t) if t.len() > 2 && !labels_fit(&[t[0], t[t.len() - 1]], &position, extent) => vec![t[0]],
            Some(t) if t.len() > 2 => vec![t[0], t[t.len() - 1]],
            Some(t) => t.clone(),
            None => Vec::new(),
        },
    }
}

/// An axis over `range` (positions: values, or their log10) with the tick and light grid positions chosen here
/// rather than by plotters.
struct TickedAxis {
    range: (f64, f64),
    ticks: Vec<f64>,
    light: Vec<f64>,
}

impl plotters::coord::ranged1d::Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (lo, hi) = self.range;
        let fraction = (value - lo) / (hi - lo);
        let pixels = (limit.1 - limit.0) as f64;
        limit.0 + (pixels * fraction + 1e-3).floor().clamp(-1e6, 1e6) as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.0..self.range.1
    }
}

/// Light grid lines: the nine mantissas of each decade on a log axis (every decade when there are many), fifths
/// of the tick step on a linear one.
fn light_lines(lo: f64, hi: f64, log: bool, ticks: &[f64]) -> Vec<f64> {
    if log {
        let c = log_candidates(10f64.powf(lo), 10f64.powf(hi));
        let all = c.into_iter().find(|t| t.len() <= 120).unwrap_or_default();
        return all.into_iter().map(f64::log10).collect();
    }
    let step = match ticks {
        [a, b, ..] => (b - a) / 5.0,
        _ => return Vec::new(),
    };
    ((lo / step).ceil() as i64..=(hi / step).floor() as i64).map(|k| k as f64 * step).collect()
}

/// Draws the layers in one panel (a PNG written whole or not at all): labelled axes, log axes drawn at log10 of
/// the values with ticks whose labels never overlap ([`axis_ticks`]), a legend of the labelled layers.
pub fn panel(path: &Path, panel: &Panel, layers: &[Layer]) -> Result<()> {
    register_font();
    let Axes { log_x, log_y } = panel.axes;
    let ((x0, x1), (y0, y1)) = match panel.range {
        Some(((a, b), (c, d))) => {
            let (Some(a), Some(b), Some(c), Some(d)) =
                (axis_position(a, log_x), axis_position(b, log_x), axis_position(c, log_y), axis_position(d, log_y))
            else {
                return Err(plot_error(path, "a given range is not finite (or not positive on a log axis)"));
            };
            ((a, b), (c, d))
        }
        None => {
            let xs = fitted_range(layers.iter().flat_map(|l| l.points.iter().map(|p| p.0)), log_x);
            let ys = fitted_range(layers.iter().flat_map(|l| l.points.iter().map(|p| p.1)), log_y);
            let (Some(xs), Some(ys)) = (xs, ys) else {
                return Err(plot_error(path, "no finite values to draw"));
            };
            (xs, ys)
        }
    };
    if !(x1 > x0 && y1 > y0) {
        return Err(plot_error(path, format!("an empty range ({x0}..{x1}, {y0}..{y1})")));
    }
    let tmp = crate::io::temporary_path(path)?.with_extension("png");
    {
        let (width, height) = panel.size;
        let root = BitMapBackend::new(&tmp, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
        let label_font: TextStyle = ("sans-serif", 14).into_font().into();
        let size_of = |text: &str| root.estimate_text_size(text, &label_font).unwrap_or((8 * text.len() as u32, 14));
        // The plotting area in pixels: what the margin, the caption and the label areas leave (plotters' layout).
        let margin = 16u32;
        let caption_font: TextStyle = ("sans-serif", 22).into_font().into();
        let caption_h = root.estimate_text_size(panel.title, &caption_font).map(|s| s.1).unwrap_or(22);
        let caption_h = caption_h + 2 * (caption_h / 2).min(5);
        let x_area = if panel.x_label.is_empty() { 32 } else { 52 };
        let plot_h = height.saturating_sub(2 * margin + caption_h + x_area) as f64;
        let y_ticks = axis_ticks(y0, y1, log_y, plot_h, &|s| size_of(s).1 as f64);
        let widest = y_ticks.iter().map(|&v| size_of(&tick_label(v)).0).max().unwrap_or(0);
        let y_area = widest + if panel.y_label.is_empty() { 16 } else { 44 };
        let plot_w = width.saturating_sub(2 * margin + y_area) as f64;
        let x_ticks = axis_ticks(x0, x1, log_x, plot_w, &|s| size_of(s).0 as f64);
        let to_positions = |ticks: &[f64], log: bool| ticks.iter().filter_map(|&v| axis_position(v, log)).collect();
        let x_coord = TickedAxis {
            range: (x0, x1),
            ticks: to_positions(&x_ticks, log_x),
            light: light_lines(x0, x1, log_x, &x_ticks),
        };
        let y_coord = TickedAxis {
            range: (y0, y1),
            ticks: to_positions(&y_ticks, log_y),
            light: light_lines(y0, y1, log_y, &y_ticks),
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(panel.title, caption_font)
            .margin(margin)
            .x_label_area_size(x_area)
            .y_label_area_size(y_area)
            .build_cartesian_2d(x_coord, y_coord)
            .map_err(|e| plot_error(path, e))?;
        let label_of = |v: &f64, log: bool| tick_label(if log { 10f64.powf(*v) } else { *v });
        chart
            .configure_mesh()
            .x_desc(panel.x_label)
            .y_desc(panel.y_label)
            .x_label_formatter(&|v| label_of(v, log_x))
            .y_label_formatter(&|v| label_of(v, log_y))
            .label_style(label_font.clone())
            .draw()
            .map_err(|e| plot_error(path, e))?;
        let mut legend = false;
        for (i, layer) in layers.iter().enumerate() {
            let colour = layer.colour.unwrap_or_else(|| palette(i));
            let points: Vec<(f64, f64)> = layer
                .points
                .iter()
                .filter_map(|&(a, b)| Some((axis_position(a, log_x)?, axis_position(b, log_y)?)))
                .collect();
            let drawn = match layer.mark {
                Mark::Points(radius) => {
                    chart.draw_series(points.into_iter().map(move |p| Circle::new(p, radius, colour.filled())))
                }
                Mark::Line => chart.draw_series(LineSeries::new(points, colour.stroke_width(2))),
                Mark::Dashed => chart.draw_series(DashedLineSeries::new(points, 8, 5, colour.stroke_width(2))),
            }
            .map_err(|e| plot_error(path, e))?;
            if !layer.label.is_empty() {
                legend = true;
                let mark = layer.mark;
                drawn.label(layer.label.clone()).legend(
                    move |(x, y)| -> DynElement<'static, BitMapBackend, (i32, i32)> {
                        match mark {
                            Mark::Points(_) => Circle::new((x + 8, y), 4, colour.filled()).into_dyn(),
                            _ => PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)).into_dyn(),
                        }
                    },
                );
            }
        }
        if legend {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(|e| plot_error(path, e))?;
        }
        root.present().map_err(|e| plot_error(path, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
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

/// A line chart with optional log x and y axes, saved as PNG: a [`panel`] of lines, each series's reference a
/// dashed line of its colour across the curves' x range.
pub fn line_chart_axes(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    axes: Axes,
) -> Result<()> {
    let xs = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| axis_position(*x, axes.log_x).is_some() && axis_position(*y, axes.log_y).is_some())
            .map(|p| p.0)
    };
    let (x0, x1) = (xs().fold(f64::INFINITY, f64::min), xs().fold(f64::NEG_INFINITY, f64::max));
    let mut layers = Vec::new();
    for (i, s) in series.iter().enumerate() {
        layers.push(Layer::line(s.label.clone(), s.points.clone()).colour(palette(i)));
        if let (Some(level), true) = (s.reference, x0 <= x1) {
            layers.push(Layer::dashed("", vec![(x0, level), (x1, level)]).colour(palette(i)));
        }
    }
    self::panel(path, &Panel::new(title, x_label, y_label).log(axes.log_x, axes.log_y).size(960, 640), &layers)
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

/// [`scatter_chart`] with axis labels (x, y): an 800 × 800 [`panel`] of markers.
pub fn scatter_chart_labelled(
    path: &Path,
    title: &str,
    labels: (&str, &str),
    sets: &[PointSet],
    range: Option<((f64, f64), (f64, f64))>,
) -> Result<()> {
    let layers: Vec<Layer> =
        sets.iter().map(|s| Layer::points(s.label.clone(), s.points.clone()).size(s.size)).collect();
    let mut frame = Panel::new(title, labels.0, labels.1).size(800, 800);
    frame.range = range;
    self::panel(path, &frame, &layers)
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
