//! Line charts (PNG) of bandwidth over time, shared by the swarm benchmark and the simulator.

use anyhow::Context as _;
use plotters::prelude::*;

/// One line: its legend, its colour and its points (minutes, Mbit/s).
pub type Line = (&'static str, RGBColor, Vec<(f64, f64)>);

/// Draws `lines` under `caption` into the PNG at `path`, 1000×600, minutes against Mbit/s.
pub fn draw(path: &std::path::Path, caption: &str, lines: Vec<Line>) -> anyhow::Result<()> {
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
        .context("reading the DejaVu font (installer/deps.sh installs fonts-dejavu-core)")?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("the DejaVu font cannot be read"))?;
    let points = || lines.iter().flat_map(|l| l.2.iter());
    let t_max = points().map(|p| p.0).fold(1.0, f64::max);
    let y_max = points().map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("time (minutes)")
        .y_desc("Mbit/s")
        .label_style(("sans-serif", 14))
        .draw()?;
    for (name, color, points) in lines {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}
