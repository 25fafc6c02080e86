//! Latency against message size, one panel per collective, one line per backend (SVG).

use std::path::Path;

use plotters::prelude::*;

use crate::report::{BenchReport, backends, human_bytes};

/// Why a plot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The file name does not end in `.svg`.
    #[error(
        "cannot write plot {path}: expected a file name ending in .svg (the plot is an SVG drawing)"
    )]
    UnsupportedFormat {
        /// The path that was given.
        path: String,
    },
    /// The report holds no sized collective to draw.
    #[error("nothing to plot: the report has no allreduce, allgatherv or broadcast rows")]
    Empty,
    /// Drawing or writing failed.
    #[error("cannot write plot {path}: {message}")]
    Drawing {
        /// The path that was given.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Writes an SVG plot of `report` to `path`: for each of allreduce, allgatherv and
/// broadcast, latency (log scale) against message size (log scale), a line per backend.
/// Barrier has no size and is left to the table.
///
/// # Errors
/// [`PlotError`] when the name does not end in `.svg`, the report has nothing to draw,
/// or the file cannot be written.
///
/// # Example
/// ```no_run
/// # let report = cobre_comm_bench::BenchReport { ranks: 2, results: vec![] };
/// cobre_comm_bench::write_plot(&report, std::path::Path::new("latency.svg")).unwrap();
/// ```
pub fn write_plot(report: &BenchReport, path: &Path) -> Result<(), PlotError> {
    let shown = path.display().to_string();
    if path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
        != Some("svg")
    {
        return Err(PlotError::UnsupportedFormat { path: shown });
    }
    let ops: Vec<&str> = ["allreduce", "allgatherv", "broadcast"]
        .into_iter()
        .filter(|op| report.results.iter().any(|r| r.op == *op && r.bytes > 0))
        .collect();
    if ops.is_empty() {
        return Err(PlotError::Empty);
    }
    draw(report, path, &ops).map_err(|message| PlotError::Drawing {
        path: shown,
        message,
    })
}

fn draw(report: &BenchReport, path: &Path, ops: &[&str]) -> Result<(), String> {
    let names = backends(report);
    let height = 420 * ops.len() as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((ops.len(), 1));
    for (panel, op) in panels.iter().zip(ops) {
        let rows: Vec<_> = report
            .results
            .iter()
            .filter(|r| r.op == *op && r.bytes > 0)
            .collect();
        let x_min = rows.iter().map(|r| r.bytes).min().unwrap_or(8) as f64;
        let x_max = rows
            .iter()
            .map(|r| r.bytes)
            .max()
            .unwrap_or(16)
            .max(x_min as usize * 2) as f64;
        let y_min = rows
            .iter()
            .map(|r| r.avg_us)
            .fold(f64::INFINITY, f64::min)
            .max(1e-3)
            / 1.5;
        let y_max = rows
            .iter()
            .map(|r| r.avg_us)
            .fold(0.0, f64::max)
            .max(y_min * 10.0)
            * 1.5;
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{op}, {} ranks", report.ranks), ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("message size")
            .y_desc("latency (us)")
            .x_label_formatter(&|x| human_bytes(x.round() as usize))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, name) in names.iter().enumerate() {
            let points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| &r.backend == name)
                .map(|r| (r.bytes as f64, r.avg_us))
                .collect();
            if points.is_empty() {
                continue;
            }
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::BenchRow;

    fn row(backend: &str, op: &str, bytes: usize, avg_us: f64) -> BenchRow {
        BenchRow {
            backend: backend.into(),
            op: op.into(),
            bytes,
            avg_us,
            min_us: avg_us,
            max_us: avg_us,
            iters: 10,
            connections: None,
        }
    }

    #[test]
    fn draws_one_line_per_backend_and_refuses_other_formats() {
        let mut results = Vec::new();
        for (i, bytes) in [8, 16, 32].into_iter().enumerate() {
            results.push(row("shm", "allreduce", bytes, 0.5 + i as f64));
            results.push(row("mpi", "allreduce", bytes, 2.0 + i as f64));
        }
        results.push(row("shm", "barrier", 0, 0.3));
        let report = BenchReport { ranks: 2, results };
        let path = std::env::temp_dir().join(format!("cobre-comm-plot-{}.svg", std::process::id()));
        write_plot(&report, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(
            svg.contains("\nshm\n") && svg.contains("\nmpi\n"),
            "legend missing"
        );
        assert!(svg.contains("allreduce, 2 ranks"));
        assert!(matches!(
            write_plot(&report, Path::new("out.png")),
            Err(PlotError::UnsupportedFormat { .. })
        ));
        let empty = BenchReport {
            ranks: 2,
            results: vec![row("shm", "barrier", 0, 1.0)],
        };
        assert!(matches!(write_plot(&empty, &path), Err(PlotError::Empty)));
    }
}
