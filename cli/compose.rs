//! `strata store compose`: run the composition and report it.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use strata_engine::Status;
use strata_rules::ComposeReport;

use crate::Setup;
use crate::args::Selection;

pub fn run(cx: &Setup, selection: &Selection, json: bool) -> anyhow::Result<ExitCode> {
    let engine = cx.engine()?;
    let ids = if selection.all {
        Vec::new()
    } else {
        selection.stores.clone()
    };
    let selected = cx.workspace.select(&ids)?.len();
    let total = (selected * cx.workspace.base_apps.len()) as u64;
    let bar = if std::io::stderr().is_terminal() && !json && !crate::quiet() {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{spinner} composing {pos}/{len} apps {wide_msg}")
                .expect("a valid template"),
        );
        Some(bar)
    } else {
        None
    };
    let started = Instant::now();
    let report = strata_rules::compose(&cx.workspace, &engine, &ids, &|event| {
        if let Some(bar) = &bar
            && let Ok(strata_rules::NodeId::Materialize { store, app }) =
                event.id.parse::<strata_rules::NodeId>()
        {
            bar.inc(1);
            bar.set_message(format!("{store}/{app}"));
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = report?;
    let elapsed = started.elapsed();
    if json {
        let value = serde_json::json!({
            "stores": report.stores,
            "removed": report.removed,
            "totals": report.totals(),
            "recomputed": report.log.recomputed(),
            "seconds": elapsed.as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else if !crate::quiet() {
        print_report(&report, elapsed, cx.verbose);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &ComposeReport, elapsed: std::time::Duration, verbose: u8) {
    for store in &report.stores {
        let mut parts = Vec::new();
        for app in &store.apps {
            match (app.status, app.counts) {
                (Status::Cached, _) | (_, None) => {
                    if verbose > 0 {
                        parts.push(format!("{}: up to date", app.app));
                    }
                }
                (_, Some(c)) if c.written + c.restored + c.removed == 0 => {
                    if verbose > 0 {
                        parts.push(format!("{}: checked", app.app));
                    }
                }
                (_, Some(c)) => {
                    let mut what = Vec::new();
                    if c.written > 0 {
                        what.push(format!("{} written", c.written));
                    }
                    if c.restored > 0 {
                        what.push(format!("{} restored", c.restored));
                    }
                    if c.removed > 0 {
                        what.push(format!("{} removed", c.removed));
                    }
                    parts.push(format!("{}: {}", app.app, what.join(", ")));
                }
            }
        }
        if parts.is_empty() {
            println!("{}: up to date", store.id);
        } else {
            println!("{}: {}", store.id, parts.join("; "));
        }
    }
    for removed in &report.removed {
        println!("removed {removed} (no longer deployable)");
    }
    let t = report.totals();
    println!(
        "composed {} in {:.2}s: {} written, {} restored, {} removed",
        crate::count(report.stores.len(), "store", "stores"),
        elapsed.as_secs_f64(),
        crate::count(t.written, "file", "files"),
        t.restored,
        t.removed
    );
    if verbose > 1 {
        print_events(&report.log);
    }
}

/// Every node's status and timing, for `-vv`.
pub fn print_events(log: &strata_engine::RunLog) {
    for event in &log.events {
        eprintln!(
            "  {:?} {} start {:?} took {:?}",
            event.status, event.id, event.start, event.duration
        );
    }
}
