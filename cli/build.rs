//! `strata store build`: compose, build, prepare `.deploy`, and report.

use std::process::ExitCode;
use std::time::Instant;

use strata_rules::{BuildOptions, BuildReport};

use crate::Setup;
use crate::args::BuildArgs;

pub fn run(cx: &Setup, args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let engine = cx.engine()?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let Some(stores) = crate::ci::stores(&cx.workspace, &args.selection, &args.ci)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let options = BuildOptions {
        stores,
        filter: args.filter.clone(),
        jobs: args.jobs.unwrap_or(cores).max(1),
        fail_fast: args.fail_fast,
        cas_dir: cx.state_dir.join("cas"),
        dry_run: false,
        remote: crate::ci::remote(&args.ci)?,
        executor: crate::ci::executor(&args.ci)?,
        sandbox: args.sandbox,
    };
    strata_engine::process::exit_on_signal(|| {
        eprintln!("interrupted: every build process was stopped; nothing was recorded")
    })?;
    let bar = crate::spinner(args.json);
    let started = Instant::now();
    let report = strata_rules::build_stores(&cx.workspace, &engine, &options, &|event| {
        if let Some(bar) = &bar
            && event.id.parse::<strata_rules::NodeId>().is_ok_and(|id| {
                matches!(
                    id.kind(),
                    strata_rules::NodeKind::Build | strata_rules::NodeKind::Prepare
                )
            })
        {
            bar.set_message(format!("{} {:?}", event.id, event.status));
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = report?;
    crate::ci::reports(&args.ci, &report.log, || {
        strata_rules::summary(&report, None)
    })?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    if args.json {
        let value = serde_json::json!({
            "stores": report.stores,
            "scripts_run": report.scripts_run,
            "remote_cache": report.remote,
            "remote_executor": report.executor,
            "warnings": report.warnings,
            "failures": report.failures.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            "seconds": started.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else if !crate::quiet() {
        print_report(&report, started.elapsed(), cx.verbose);
        if cx.verbose > 1 {
            crate::compose::print_events(&report.log);
        }
    }
    for failure in &report.failures {
        eprintln!("error: {failure}");
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_report(report: &BuildReport, elapsed: std::time::Duration, verbose: u8) {
    for store in &report.stores {
        let parts: Vec<String> = store
            .apps
            .iter()
            .filter(|a| verbose > 0 || a.build != "no-script" || a.deploy.is_some())
            .map(|a| {
                let mut text = format!("{} {}", a.app, a.build);
                if let Some(s) = a.seconds {
                    text.push_str(&format!(" in {s:.1}s"));
                }
                if let Some(with) = &a.shared_with {
                    text.push_str(&format!(" (with {with})"));
                }
                if let Some(d) = a.deploy {
                    text.push_str(&format!(", .deploy {d}"));
                }
                text
            })
            .collect();
        println!("{}: {}", store.id, parts.join("; "));
    }
    println!(
        "built {} in {:.2}s: {} run, {} failed",
        crate::count(report.stores.len(), "store", "stores"),
        elapsed.as_secs_f64(),
        crate::count(report.scripts_run, "build script", "build scripts"),
        report.failures.len()
    );
    if let Some(e) = &report.executor {
        println!(
            "remote executor {}: {} submitted, {} run by a worker, {} sent, {} read",
            e.url,
            crate::count(e.actions, "action", "actions"),
            e.executed,
            crate::deploy::bytes(e.uploaded),
            crate::deploy::bytes(e.downloaded)
        );
    }
}
