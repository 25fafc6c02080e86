//! `cobre-outputs compare --rel TOL DIR_A DIR_B FILE...`: every named file of two `cobre run`
//! output directories holds the same data. Floating-point columns of Parquet files may
//! differ by `TOL` relative to `max(1, |a|, |b|)` (with `TOL` 0 they must be equal bit for
//! bit); other columns must be equal; columns named `time_*` (wall-clock measurements) are
//! not compared. Other files must be equal byte for byte once ISO-8601 UTC timestamps
//! (`YYYY-MM-DDTHH:MM:SSZ`, the creation time the policy manifest records) are masked.
//! Exit code 1 with the first differences on stderr.
//!
//! `cobre-outputs comm-time DIR`: the communication time of training recorded in
//! `training/timing/iterations.parquet` (`mpi_allreduce_ms`, `cut_sync_ms`,
//! `state_exchange_ms`, `lower_bound_ms`, summed over iterations, largest over ranks) and the
//! forward and backward wall time for scale, as one line of `name=value` pairs.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::ExitCode;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int32Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::build)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// One column of all batches, concatenated.
fn column(batches: &[RecordBatch], index: usize) -> Result<ArrayRef, String> {
    let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(index).as_ref()).collect();
    arrow::compute::concat(&parts).map_err(|e| e.to_string())
}

fn floats(array: &ArrayRef) -> Option<Vec<Option<f64>>> {
    match array.data_type() {
        DataType::Float64 => Some(array.as_primitive::<Float64Type>().iter().collect()),
        DataType::Float32 => Some(
            array
                .as_primitive::<Float32Type>()
                .iter()
                .map(|v| v.map(f64::from))
                .collect(),
        ),
        _ => None,
    }
}

/// Compares two Parquet files; returns the differences found (at most a few per column).
fn compare_parquet(a: &Path, b: &Path, rel: f64) -> Result<Vec<String>, String> {
    let (ba, bb) = (read_parquet(a)?, read_parquet(b)?);
    let mut diffs = Vec::new();
    let schema_a = ba.first().map(RecordBatch::schema);
    let schema_b = bb.first().map(RecordBatch::schema);
    if schema_a != schema_b {
        return Ok(vec![format!("schemas differ: {schema_a:?} vs {schema_b:?}")]);
    }
    let Some(schema) = schema_a else {
        return Ok(diffs);
    };
    let rows = |bs: &[RecordBatch]| bs.iter().map(RecordBatch::num_rows).sum::<usize>();
    if rows(&ba) != rows(&bb) {
        return Ok(vec![format!("{} rows against {}", rows(&ba), rows(&bb))]);
    }
    for (i, field) in schema.fields().iter().enumerate() {
        if field.name().starts_with("time_") {
            continue;
        }
        let (ca, cb) = (column(&ba, i)?, column(&bb, i)?);
        match (floats(&ca), floats(&cb)) {
            (Some(fa), Some(fb)) => {
                let mut worst = 0.0_f64;
                let mut bad = 0;
                for (row, (x, y)) in fa.iter().zip(&fb).enumerate() {
                    let ok = match (x, y) {
                        (Some(x), Some(y)) if rel == 0.0 => x.to_bits() == y.to_bits(),
                        (Some(x), Some(y)) => {
                            let scale = 1.0_f64.max(x.abs()).max(y.abs());
                            let d = (x - y).abs() / scale;
                            worst = worst.max(d);
                            d <= rel || (x.is_nan() && y.is_nan())
                        }
                        (None, None) => true,
                        _ => false,
                    };
                    if !ok {
                        bad += 1;
                        if bad <= 3 {
                            diffs.push(format!("{} row {row}: {x:?} vs {y:?}", field.name()));
                        }
                    }
                }
                if bad > 3 {
                    diffs.push(format!("{}: {bad} rows differ (largest relative difference {worst:e})", field.name()));
                }
            }
            _ => {
                if ca.as_ref() != cb.as_ref() {
                    diffs.push(format!("{}: values differ (compared exactly)", field.name()));
                }
            }
        }
    }
    Ok(diffs)
}

/// Zeroes every `YYYY-MM-DDTHH:MM:SSZ` in `bytes`.
fn mask_timestamps(mut bytes: Vec<u8>) -> Vec<u8> {
    const PATTERN: &[u8; 20] = b"dddd-dd-ddTdd:dd:ddZ";
    let matches = |w: &[u8]| {
        w.iter().zip(PATTERN).all(|(&c, &p)| match p {
            b'd' => c.is_ascii_digit(),
            _ => c == p,
        })
    };
    let mut i = 0;
    while i + PATTERN.len() <= bytes.len() {
        if matches(&bytes[i..i + PATTERN.len()]) {
            bytes[i..i + PATTERN.len()].fill(0);
            i += PATTERN.len();
        } else {
            i += 1;
        }
    }
    bytes
}

fn compare(args: &[String]) -> Result<bool, String> {
    let [flag, tol, dir_a, dir_b, files @ ..] = args else {
        return Err("usage: compare --rel TOL DIR_A DIR_B FILE...".into());
    };
    if flag != "--rel" {
        return Err(format!("expected --rel, found {flag}"));
    }
    let rel: f64 = tol.parse().map_err(|_| format!("--rel {tol}: expected a number"))?;
    let mut same = true;
    for file in files {
        let (a, b) = (Path::new(dir_a).join(file), Path::new(dir_b).join(file));
        let diffs = if file.ends_with(".parquet") {
            compare_parquet(&a, &b, rel)?
        } else {
            let read = |p: &Path| {
                std::fs::read(p)
                    .map(mask_timestamps)
                    .map_err(|e| format!("{}: {e}", p.display()))
            };
            if read(&a)? == read(&b)? { vec![] } else { vec!["bytes differ".to_string()] }
        };
        if !diffs.is_empty() {
            same = false;
            eprintln!("{file}:");
            for d in diffs {
                eprintln!("  {d}");
            }
        }
    }
    Ok(same)
}

fn comm_time(args: &[String]) -> Result<(), String> {
    let [dir] = args else {
        return Err("usage: comm-time DIR".into());
    };
    let path = Path::new(dir).join("training/timing/iterations.parquet");
    let batches = read_parquet(&path)?;
    let wanted = [
        "mpi_allreduce_ms",
        "cut_sync_ms",
        "state_exchange_ms",
        "lower_bound_ms",
        "forward_wall_ms",
        "backward_wall_ms",
    ];
    // Per rank, the sum over every row of each column.
    let mut per_rank: BTreeMap<i32, BTreeMap<&str, i64>> = BTreeMap::new();
    for batch in &batches {
        let schema = batch.schema();
        let rank_col = batch
            .column(schema.index_of("rank").map_err(|e| e.to_string())?)
            .as_primitive::<Int32Type>()
            .clone();
        for name in wanted {
            let col = batch
                .column(schema.index_of(name).map_err(|e| e.to_string())?)
                .as_primitive::<Int64Type>()
                .clone();
            for row in 0..batch.num_rows() {
                let rank = if rank_col.is_null(row) { 0 } else { rank_col.value(row) };
                *per_rank.entry(rank).or_default().entry(name).or_default() += col.value(row);
            }
        }
    }
    let max = |name: &str| per_rank.values().map(|m| m.get(name).copied().unwrap_or(0)).max().unwrap_or(0);
    let comm = ["mpi_allreduce_ms", "cut_sync_ms", "state_exchange_ms"];
    let total: i64 = per_rank
        .values()
        .map(|m| comm.iter().map(|c| m.get(c).copied().unwrap_or(0)).sum::<i64>())
        .max()
        .unwrap_or(0);
    println!(
        "comm_ms={total} mpi_allreduce_ms={} cut_sync_ms={} state_exchange_ms={} lower_bound_ms={} forward_ms={} backward_ms={}",
        max("mpi_allreduce_ms"),
        max("cut_sync_ms"),
        max("state_exchange_ms"),
        max("lower_bound_ms"),
        max("forward_wall_ms"),
        max("backward_wall_ms")
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("compare") => compare(&args[1..]).map(|same| if same { 0 } else { 1 }),
        Some("comm-time") => comm_time(&args[1..]).map(|()| 0),
        _ => Err("usage: cobre-outputs compare --rel TOL DIR_A DIR_B FILE... | comm-time DIR".into()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("cobre-outputs: {e}");
            ExitCode::from(2)
        }
    }
}
