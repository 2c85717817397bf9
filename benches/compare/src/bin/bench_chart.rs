//! Draws `docs/bench.png` (at the top of the repository) from the results of
//! `cargo bench --bench verify`, and prints them as Markdown with the targets'
//! PASS/FAIL.
//!
//! ```text
//! cd benches/compare
//! cargo bench --bench verify
//! cargo run --release --bin bench_chart [-- --criterion-dir DIR] [--output FILE]
//! ```
//!
//! One horizontal bar per case: operations per second per core (a case run on two
//! threads at once counts half its combined rate per core), on a log scale, since
//! a cached request is about a hundred times cheaper than an RSA verification. The
//! text is drawn with DejaVu Sans, embedded by the `dejavu` crate, so no system font
//! is needed.

use std::path::Path;

use plotters::{
    coord::Shift,
    prelude::*,
    style::{FontStyle, register_font},
};

use zitadel_system_auth_compare::report::{self, CASES, Estimate, Kind};

const BAR_HEIGHT: u32 = 34;

fn colour(kind: Kind) -> RGBColor {
    match kind {
        Kind::Floor => RGBColor(110, 110, 110),
        Kind::Ours => RGBColor(31, 119, 180),
        Kind::Refusal => RGBColor(44, 160, 44),
        Kind::Baseline => RGBColor(190, 190, 190),
        Kind::Other => RGBColor(255, 127, 14),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut criterion_dir = report::criterion_dir();
    // This crate is benches/compare/ in the repository.
    let repository = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .ok_or("benches/compare/ is two folders below the repository")?;
    let mut output = repository.join("docs/bench.png");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--criterion-dir" => criterion_dir = args.next().ok_or("--criterion-dir DIR")?.into(),
            "--output" => output = args.next().ok_or("--output FILE")?.into(),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }

    let estimates = report::load(&criterion_dir);
    if estimates.is_empty() {
        return Err(format!(
            "no results under {}: run `cargo bench --bench verify` first",
            criterion_dir.display()
        )
        .into());
    }
    println!("{}", report::markdown_table(&estimates, None));
    println!("{}", report::verdict_table(&report::verdicts(&estimates)));
    println!("{}", report::per_route_means_table(&estimates));

    let bars: Vec<(&report::Case, f64)> = CASES
        .iter()
        .filter_map(|case| {
            estimates
                .get(case.name)
                .map(|e: &Estimate| (case, report::per_core_rate(case, e)))
        })
        .collect();

    register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "cannot load the embedded font")?;
    register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold())
        .map_err(|_| "cannot load the embedded font")?;

    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let height = 170 + BAR_HEIGHT * bars.len() as u32;
    let root = BitMapBackend::new(&output, (1200, height)).into_drawing_area();
    let clock = report::clock(&criterion_dir);
    let caption = match clock.as_str() {
        "cpu" => {
            "zitadel-system-auth: requests per second per core, by thread CPU time (log scale)"
        }
        _ => "zitadel-system-auth: requests per second per core (log scale, higher is better)",
    };
    draw(&root, &bars, caption)?;
    root.present()?;
    println!("wrote {}", output.display());
    Ok(())
}

fn draw(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    bars: &[(&report::Case, f64)],
    caption: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let n = bars.len();
    let lowest = bars.iter().map(|b| b.1).fold(f64::INFINITY, f64::min);
    let highest = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    // From the power of ten below the slowest case, with room on the right for
    // the labels.
    let x_min = 10f64.powf((lowest / 2.0).log10().floor());
    let x_max = highest * 4.0;

    let mut chart = ChartBuilder::on(root)
        .caption(
            caption,
            ("sans-serif", 22).into_font().style(FontStyle::Bold),
        )
        .margin(16)
        .margin_bottom(44)
        .x_label_area_size(52)
        .y_label_area_size(250)
        .build_cartesian_2d((x_min..x_max).log_scale(), (0..n - 1).into_segmented())?;

    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_style(("sans-serif", 15))
        .y_label_formatter(&|y| match y {
            // Index 0 is at the bottom: the first case goes on top.
            SegmentValue::CenterOf(i) if *i < n => bars[n - 1 - *i].0.name.to_owned(),
            _ => String::new(),
        })
        .x_label_style(("sans-serif", 14))
        .x_label_formatter(&|x| report::format_rate(*x))
        .x_desc("operations per second per core")
        .axis_desc_style(("sans-serif", 15))
        .draw()?;

    for (index, (case, rate)) in bars.iter().enumerate() {
        let y = n - 1 - index;
        let mut bar = Rectangle::new(
            [
                (x_min, SegmentValue::Exact(y)),
                (*rate, SegmentValue::Exact(y + 1)),
            ],
            colour(case.kind).filled(),
        );
        bar.set_margin(5, 5, 0, 0);
        chart.draw_series(std::iter::once(bar))?;
        let label = format!(
            "{}/s   ({})",
            report::format_rate(*rate),
            report::format_time(1e9 / (rate * f64::from(case.threads)))
        );
        chart.draw_series(std::iter::once(
            EmptyElement::at((*rate, SegmentValue::CenterOf(y)))
                + Text::new(label, (6, -8), ("sans-serif", 14).into_font()),
        ))?;
    }

    // The legend, along the bottom.
    let legend = [
        (Kind::Floor, "RSA verify alone (floor)"),
        (Kind::Ours, "zitadel-system-auth"),
        (Kind::Refusal, "refusals (no RSA)"),
        (Kind::Baseline, "Router without auth"),
        (Kind::Other, "jwt-authorizer"),
    ];
    let (_, height) = root.dim_in_pixel();
    let mut x = 140;
    let y = height as i32 - 22;
    for (kind, text) in legend {
        root.draw(&Rectangle::new(
            [(x, y - 7), (x + 14, y + 7)],
            colour(kind).filled(),
        ))?;
        let font: TextStyle = ("sans-serif", 14).into_font().into();
        let (text_width, _) = root.estimate_text_size(text, &font)?;
        root.draw(&Text::new(text, (x + 20, y - 8), font))?;
        x += 20 + text_width as i32 + 30;
    }
    Ok(())
}
