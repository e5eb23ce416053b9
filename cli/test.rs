//! `strata store test`: build the selected stores, then run each one's
//! test app against its production servers, and report per store.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use strata_rules::BuildOptions;
use strata_rules::store_test::{TestOptions, test_stores};

use crate::Setup;
use crate::args::TestArgs;

pub fn run(cx: &Setup, args: &TestArgs) -> anyhow::Result<ExitCode> {
    let stores = match &args.since {
        Some(since) => {
            let report = strata_rules::changed(
                cx.workspace.root(),
                &strata_rules::ChangedOptions {
                    since: since.clone(),
                    to: args.to.clone(),
                    uncommitted: false,
                    global_dependencies: Vec::new(),
                },
            )?;
            for warning in &report.warnings {
                eprintln!("warning: {warning}");
            }
            let ids: Vec<String> = report.ids().iter().map(|s| s.to_string()).collect();
            if ids.is_empty() {
                info!("[strata] no store changed since {since}: nothing to test");
                if args.json {
                    println!("{}", serde_json::json!({ "stores": [] }));
                }
                return Ok(ExitCode::SUCCESS);
            }
            ids
        }
        None => Setup::ids(&args.selection),
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let build = BuildOptions {
        stores,
        filter: Vec::new(),
        jobs: cores,
        fail_fast: false,
        cas_dir: cx.state_dir.join("cas"),
        dry_run: false,
        remote: None,
        executor: None,
        sandbox: false,
    };
    let options = TestOptions {
        jobs: if args.ui { 1 } else { args.jobs.max(1) },
        force: args.force || args.ui,
        color: crate::color(std::io::stdout().is_terminal()),
        script_args: if args.ui {
            vec!["--ui".to_string()]
        } else {
            Vec::new()
        },
    };
    let engine = cx.engine()?;
    strata_engine::process::exit_on_signal(|| {
        eprintln!("interrupted: every server and test process was stopped; nothing was recorded")
    })?;
    let started = Instant::now();
    let report = test_stores(&cx.workspace, &engine, &build, &options, &|_| {})?;
    for warning in &report.build.warnings {
        eprintln!("warning: {warning}");
    }
    if args.json {
        let value = serde_json::json!({
            "stores": report.stores,
            "builds": report.build.stores,
            "failures": report.build.failures.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            "seconds": started.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{:<20} {:<8} {:>8}", "STORE", "TEST", "TIME");
        for store in &report.stores {
            let time = store.seconds.map_or(String::new(), |s| format!("{s:.1}s"));
            println!("{:<20} {:<8} {:>8}", store.id, store.test, time);
        }
        let failed = report
            .stores
            .iter()
            .filter(|s| s.test != "passed" && s.test != "cached")
            .count();
        println!(
            "tested {} in {:.1}s: {} failed",
            crate::count(report.stores.len(), "store", "stores"),
            started.elapsed().as_secs_f64(),
            failed
        );
    }
    for failure in &report.build.failures {
        eprintln!("error: {failure}");
    }
    Ok(if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
