//! The report's chart scaffolding: tick labels, tick choice (labels never overlap), and a panel written whole.

use scorelens::report::{axis_ticks, line_chart_axes, panel, tick_label, Axes, Layer, Panel, Series};

/// A label's width in pixels, as a monospace font of 8 px a character would give (the tests' own measure).
fn width(text: &str) -> f64 {
    8.0 * text.chars().count() as f64
}

/// Whether the labels of `ticks` on an axis over [lo, hi] (values; log10 positions when `log`) of `pixels` keep at
/// least `gap` pixels between them, measured independently of the library.
fn no_overlap(ticks: &[f64], lo: f64, hi: f64, log: bool, pixels: f64, gap: f64) -> bool {
    let at = |v: f64| {
        let (v, lo, hi) = if log { (v.log10(), lo.log10(), hi.log10()) } else { (v, lo, hi) };
        (v - lo) / (hi - lo) * pixels
    };
    ticks.windows(2).all(|w| at(w[1]) - at(w[0]) >= (width(&tick_label(w[0])) + width(&tick_label(w[1]))) / 2.0 + gap)
}

#[test]
fn tick_labels_are_short_and_exact() {
    assert_eq!(tick_label(0.1 + 0.2), "0.3");
    assert_eq!(tick_label(0.07), "0.07");
    assert_eq!(tick_label(60.0), "60");
    assert_eq!(tick_label(-2.5), "-2.5");
    assert_eq!(tick_label(0.0), "0");
    assert_eq!(tick_label(1e-4), "1e-4");
    assert_eq!(tick_label(2.5e6), "2.5e6");
}

#[test]
fn log_ticks_near_a_tenth_never_overlap() {
    // The demo's σ axes: 0.01–0.3 and 0.032–0.3 (log), on a 700-pixel axis; and a narrow one.
    for (lo, hi, pixels) in [(0.009, 0.33, 700.0), (0.025, 0.4, 700.0), (0.009, 0.33, 160.0), (1e-4, 1e4, 300.0)] {
        let ticks = axis_ticks(f64::log10(lo), f64::log10(hi), true, pixels, &width);
        assert!(ticks.len() >= 2, "{lo}–{hi}: {ticks:?}");
        assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{ticks:?}");
        assert!(ticks.iter().all(|&v| v >= lo && v <= hi), "{lo}–{hi}: {ticks:?}");
        assert!(no_overlap(&ticks, lo, hi, true, pixels, 10.0), "{lo}–{hi} over {pixels} px: {ticks:?}");
    }
    // Wide enough: a tenth is labelled, with its neighbours of the 1-2-5 sequence and not the crowded 0.06–0.09.
    let ticks = axis_ticks(f64::log10(0.009), f64::log10(0.33), true, 700.0, &width);
    assert!(ticks.contains(&0.1) && ticks.contains(&0.2) && ticks.contains(&0.05), "{ticks:?}");
    assert!(!ticks.iter().any(|&v| (v - 0.08).abs() < 1e-12), "{ticks:?}");
}

#[test]
fn a_log_axis_shorter_than_a_decade_still_gets_ticks() {
    let (lo, hi) = (0.72, 0.95);
    let ticks = axis_ticks(f64::log10(lo), f64::log10(hi), true, 500.0, &width);
    assert!(ticks.len() >= 2, "{ticks:?}");
    assert!(ticks.iter().all(|&v| v >= lo && v <= hi), "{ticks:?}");
    assert!(no_overlap(&ticks, lo, hi, true, 500.0, 10.0), "{ticks:?}");
}

#[test]
fn linear_ticks_are_round_and_apart() {
    for (lo, hi, pixels) in [(-0.06, 1.06, 600.0), (0.0, 64.0, 700.0), (-3.2e-5, 7.7e-4, 400.0), (1234.0, 1240.0, 90.0)]
    {
        let ticks = axis_ticks(lo, hi, false, pixels, &width);
        assert!(!ticks.is_empty(), "{lo}–{hi}: {ticks:?}");
        assert!(ticks.iter().all(|&v| v >= lo && v <= hi), "{lo}–{hi}: {ticks:?}");
        assert!(no_overlap(&ticks, lo, hi, false, pixels, 10.0), "{lo}–{hi} over {pixels} px: {ticks:?}");
        // Multiples of one step: equal spacing.
        if let [a, b, rest @ ..] = &ticks[..] {
            let step = b - a;
            assert!(rest.iter().enumerate().all(|(i, v)| (v - (b + step * (i + 1) as f64)).abs() < 1e-9 * step.abs()));
        }
    }
    let ticks = axis_ticks(-0.06, 1.06, false, 600.0, &width);
    assert!(ticks.contains(&0.0) && ticks.contains(&1.0), "{ticks:?}");
}

#[test]
fn a_panel_is_written_whole_or_not_at_all() {
    let dir = std::env::temp_dir().join(format!("scorelens-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("panel.png");
    let sigmas = [0.3, 0.15, 0.07, 0.03, 0.01];
    panel(
        &path,
        &Panel::new("log–log", "σ (log)", "distance (log)").log(true, true),
        &[
            Layer::line("median", sigmas.iter().map(|&s| (s, 0.6 * s)).collect()),
            Layer::points("", sigmas.iter().map(|&s| (s, 0.5 * s)).collect()).size(2),
            Layer::dashed("a level", vec![(0.01, 0.05), (0.3, 0.05)]),
        ],
    )
    .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");

    // The line chart through the same panel: a reference line and a log x axis.
    let chart = dir.join("chart.png");
    let series =
        [Series { label: "d".into(), points: sigmas.iter().map(|&s| (s, 1.0 / s)).collect(), reference: Some(10.0) }];
    line_chart_axes(&chart, "chart", "σ", "d", &series, Axes { log_x: true, log_y: false }).unwrap();
    assert!(std::fs::read(&chart).unwrap().starts_with(b"\x89PNG"));

    // Nothing a log axis can show: one error naming the file, and no file.
    let empty = dir.join("empty.png");
    let err = panel(&empty, &Panel::new("t", "x", "y").log(true, false), &[Layer::line("neg", vec![(-1.0, 2.0)])])
        .unwrap_err();
    assert!(err.to_string().contains("empty.png") && err.to_string().contains("no finite values"), "{err}");
    assert!(!empty.exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
