//! `strata store deploy`: the whole pipeline, a live view on a terminal,
//! and a summary table.

use std::process::ExitCode;
use std::time::Instant;

use strata_rules::oci::auth::Credentials;
use strata_rules::oci::layer::Compression;
use strata_rules::{BuildOptions, DeployOptions, DeployReport};

use crate::Setup;
use crate::args::{CompressionArg, DeployArgs};

/// The options of a plain deploy of `stores` (all when empty), for the
/// picture of its graph and `explain --deploy`: the registry and console
/// from the environment (or the config) as `store deploy` reads them.
pub fn graph_options(cx: &Setup, stores: Vec<String>) -> DeployOptions {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    DeployOptions {
        build: BuildOptions {
            stores,
            filter: Vec::new(),
            jobs: 1,
            fail_fast: false,
            cas_dir: cx.state_dir.join("cas"),
            dry_run: true,
            remote: None,
            executor: None,
            sandbox: false,
        },
        registry: env("CLI_DOCKER_REGISTRY_URL")
            .or_else(|| cx.workspace.config.strata.registry.clone()),
        credentials: match (env("CLI_CLOUD_USERNAME"), env("CLI_CLOUD_PASSWORD")) {
            (Some(username), Some(password)) => Some(Credentials { username, password }),
            _ => None,
        },
        insecure: false,
        ca_file: None,
        base_image: None,
        platform: "linux/amd64".into(),
        compression: Compression::Gzip,
        allow_dirty: false,
        console_url: env("CLI_CONSOLE_URL"),
        force: false,
        pull: false,
        state_dir: cx.state_dir.clone(),
    }
}

/// `store explain ID --deploy`: a dry run of a deploy of one store, told
/// in words: each stage, and each of its nodes that would run with why.
pub fn explain(cx: &Setup, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let engine = cx.engine()?;
    let mut options = graph_options(cx, vec![id.to_string()]);
    options.allow_dirty = true;
    let report = strata_rules::deploy(&cx.workspace, &engine, &options, &|_| {})?;
    let Some(store) = report.stores.iter().find(|s| s.id == id) else {
        anyhow::bail!(strata_rules::Error::UnknownStore {
            message: format!("no deployable store {id:?}"),
        });
    };
    if json {
        println!("{}", serde_json::to_string_pretty(store)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{id}: a deploy now (tag {}, to {}) would do this:",
        report.tag, report.target
    );
    for stage in ["compose", "build", "prepare", "image", "push", "trigger"] {
        let status = store.stages.get(stage).map(String::as_str).unwrap_or("-");
        let words = match status {
            "cached" => "nothing to do: its inputs are as last time",
            "unchanged" if stage == "trigger" => {
                "not triggered: the store's images are those of its last deployment"
            }
            "unchanged" => "nothing to send: the registry has the image under this tag",
            "planned" => "would run",
            _ => status,
        };
        println!("  {stage:<8} {words}");
    }
    // The nodes of this store that would run, each with its reason.
    let mine = |node: &str| {
        node.parse::<strata_rules::NodeId>()
            .is_ok_and(|n| n.store() == Some(id))
    };
    for event in &report.build.log.events {
        if event.status == strata_engine::Status::Planned
            && mine(&event.id)
            && let Some(reason) = &event.reason
        {
            println!("    {} would run: {reason}", event.id);
        }
    }
    if let Some(message) = &store.message {
        println!("  {message}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(cx: &Setup, args: &DeployArgs) -> anyhow::Result<ExitCode> {
    let engine = cx.engine()?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let credentials = match (&args.username, &args.password) {
        (Some(u), Some(p)) => Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        }),
        (Some(_), None) | (None, Some(_)) => {
            anyhow::bail!(strata_rules::Error::Usage {
                message: "give both a user name and a password (--username/--password or CLI_CLOUD_USERNAME/CLI_CLOUD_PASSWORD)".into()
            })
        }
        (None, None) => None,
    };
    let Some(stores) = crate::ci::stores(&cx.workspace, &args.selection, &args.ci)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let options = DeployOptions {
        build: BuildOptions {
            stores,
            filter: Vec::new(),
            jobs: args.jobs.unwrap_or(cores).max(1),
            fail_fast: false,
            cas_dir: cx.state_dir.join("cas"),
            dry_run: args.dry_run,
            remote: crate::ci::remote(&args.ci)?,
            executor: crate::ci::executor(&args.ci)?,
            sandbox: false,
        },
        registry: args
            .registry
            .clone()
            .or_else(|| cx.workspace.config.strata.registry.clone()),
        credentials,
        insecure: args.insecure_registry,
        ca_file: std::env::var_os("SSL_CERT_FILE").map(Into::into),
        base_image: args.base_image.clone(),
        platform: args.platform.clone(),
        compression: match args.compression {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
        },
        allow_dirty: args.allow_dirty,
        console_url: args.console_url.clone(),
        force: args.force,
        pull: args.pull,
        state_dir: cx.state_dir.clone(),
    };
    strata_engine::process::exit_on_signal(|| {
        eprintln!("interrupted: every build process was stopped")
    })?;
    let bar = crate::spinner(args.json);
    let started = Instant::now();
    let report = strata_rules::deploy(&cx.workspace, &engine, &options, &|event| {
        if let Some(bar) = &bar {
            bar.set_message(format!("{} {:?}", event.id, event.status));
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = report?;
    crate::ci::reports(&args.ci, &report.build.log, || {
        strata_rules::summary(&report.build, Some(&report))
    })?;
    for warning in &report.build.warnings {
        eprintln!("warning: {warning}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !crate::quiet() || args.dry_run {
        // A plan is what --dry-run asks for: printed even with --quiet.
        print_report(&report, started.elapsed(), args.dry_run);
    }
    let failed = !report.failures.is_empty() || !report.build.failures.is_empty();
    for failure in report.build.failures.iter().chain(&report.failures) {
        eprintln!("error: {failure}");
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(report: &DeployReport, elapsed: std::time::Duration, dry_run: bool) {
    let stages = ["compose", "build", "prepare", "image", "push", "trigger"];
    if dry_run {
        println!("plan for {} (tag {}):", report.target, report.tag);
    }
    let width = report
        .stores
        .iter()
        .map(|s| s.id.len())
        .max()
        .unwrap_or(5)
        .max(5);
    print!("{:<width$}", "STORE");
    for s in stages {
        print!("  {s:<9}");
    }
    println!("  {:>10}  {:>7}", "UPLOADED", "TIME");
    for store in &report.stores {
        print!("{:<width$}", store.id);
        for s in stages {
            print!(
                "  {:<9}",
                store.stages.get(s).map(String::as_str).unwrap_or("-")
            );
        }
        println!(
            "  {:>10}  {:>6.1}s",
            bytes(store.bytes_uploaded),
            store.seconds
        );
        for image in &store.images {
            println!(
                "{:width$}  {} {} ({})",
                "",
                image.app,
                image.image,
                &image.digest[..19]
            );
        }
        if let Some(m) = &store.message {
            println!("{:width$}  {m}", "");
        }
    }
    if dry_run {
        println!(
            "planned {} to {}",
            crate::count(report.stores.len(), "store", "stores"),
            report.target
        );
        return;
    }
    let done = report
        .stores
        .iter()
        .filter(|s| {
            s.stages
                .get("trigger")
                .is_some_and(|t| t == "run" || t == "unchanged")
        })
        .count();
    if done == report.stores.len() {
        println!(
            "deployed {} to {} in {:.1}s",
            crate::count(done, "store", "stores"),
            report.target,
            elapsed.as_secs_f64()
        );
    } else {
        println!(
            "deployed {done} of {} to {} in {:.1}s; the others failed (below)",
            crate::count(report.stores.len(), "store", "stores"),
            report.target,
            elapsed.as_secs_f64()
        );
    }
}

pub(crate) fn bytes(n: u64) -> String {
    match n {
        0 => "0".into(),
        n if n < 1 << 20 => format!("{:.1} KB", n as f64 / 1024.0),
        n => format!("{:.1} MB", n as f64 / (1 << 20) as f64),
    }
}
