//! `strata store add`, `store move`, `store lint` and `store start`.

use std::io::IsTerminal;
use std::process::ExitCode;

use strata_rules::manage::{self, AddOptions};
use strata_rules::{Supervisor, Workspace, selected, start_specs};

use crate::Setup;
use crate::args::{AddArgs, LintArgs, MoveArgs, StartArgs, TsconfigArgs};

/// The monorepo read again now that the locks are held: a store another
/// process added while this one waited is seen.
fn reloaded(cx: &Setup) -> anyhow::Result<Workspace> {
    Ok(Workspace::load(cx.workspace.root())?)
}

pub fn add(cx: &Setup, args: &AddArgs) -> anyhow::Result<ExitCode> {
    let report = manage::add_store(
        &reloaded(cx)?,
        &AddOptions {
            id: args.store_id.clone(),
            parent: args.parent.clone(),
            template: args.template,
            framework: args.framework.clone(),
            project_name: args.console_project_name.clone(),
            cloud_region: args.cloud_region.clone(),
        },
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !crate::quiet() {
        print!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn move_stores(cx: &Setup, args: &MoveArgs) -> anyhow::Result<ExitCode> {
    let report = manage::move_stores(&reloaded(cx)?, &args.store_id, Some(&args.parent))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        // What resolves differently is the answer asked for: printed
        // even with --quiet.
        print!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn lint(cx: &Setup, args: &LintArgs) -> anyhow::Result<ExitCode> {
    let report = manage::lint(&cx.workspace)?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.found() || !crate::quiet() {
        print!("{report}");
    }
    Ok(if report.found() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn tsconfig(cx: &Setup, args: &TsconfigArgs) -> anyhow::Result<ExitCode> {
    let ws = reloaded(cx)?;
    for id in &args.store_id {
        if ws.store(id).is_none() {
            return Err(strata_rules::Error::UnknownStore {
                message: format!("no store {id:?} in this monorepo"),
            }
            .into());
        }
    }
    let report = strata_rules::tsconfig::sync(&ws, &args.store_id, args.check)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for path in &report.stale {
            if args.check {
                println!("stale: {path}");
            } else if !crate::quiet() {
                println!("wrote {path}");
            }
        }
        if !crate::quiet() {
            eprintln!(
                "[strata] {} tsconfig.json {}, {} up to date",
                report.stale.len(),
                if args.check { "stale" } else { "written" },
                report.current
            );
        }
    }
    Ok(if args.check && !report.stale.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn start(cx: Setup, args: &StartArgs) -> anyhow::Result<ExitCode> {
    let Setup { workspace: ws, .. } = cx;
    let ids = Setup::ids(&args.selection);
    let stores = selected(&ws, &ids);
    ws.select(&ids)?;
    let specs = start_specs(&ws, &stores)?;
    if specs.is_empty() {
        anyhow::bail!("nothing to start: no selected store has an app with a server");
    }
    for spec in &specs {
        let port = spec.port.map_or("no port in localPorts".to_string(), |p| {
            format!("http://localhost:{p}")
        });
        info!("[strata] starting {}/{} ({port})", spec.store, spec.app);
    }
    strata_engine::process::exit_on_signal_with(0, || {
        info!("[strata] stopped: every server was stopped");
    })?;
    let _servers = Supervisor::start(
        ws.root(),
        specs,
        crate::color(std::io::stdout().is_terminal()),
    )?;
    info!("[strata] Ctrl-C stops");
    loop {
        std::thread::park();
    }
}
