//! `strata store dev`: compose, start the dev servers, then keep `.out`
//! exact as files change, one batch of changes at a time.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use strata_engine::Watcher;
use strata_rules::{
    SourceCache, Supervisor, Workspace, filter_apps, reconcile, selected, server_specs, targets,
};

use crate::Setup;
use crate::args::DevArgs;

pub fn run(cx: Setup, args: &DevArgs) -> anyhow::Result<ExitCode> {
    let Setup {
        workspace: mut ws,
        verbose,
        ..
    } = cx;
    let engine = Setup::open_engine(&cx.state_dir)?;
    let ids = Setup::ids(&args.selection);
    let mut stores = selected(&ws, &ids);
    ws.select(&ids)?;
    let apps = filter_apps(&ws.base_apps, &args.filter)?;
    let root = ws.root().to_path_buf();
    // Watch first: what changes while the compose runs is then a batch of
    // its own, not lost.
    let config = root.join(strata_rules::CONFIG_FILE);
    let mut watcher = Watcher::new(
        &root,
        &[root.join(strata_rules::APPS)],
        std::slice::from_ref(&config),
    )?
    // Git-ignored `.env` files are composed: their edits count.
    .keep_ignored(|path| {
        path.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(strata_rules::is_dotenv)
    });
    if !args.skip_compose {
        let report = strata_rules::compose(&ws, &engine, &stores, &|_| {})?;
        let t = report.totals();
        info!(
            "[strata] composed {}: {} written, {} removed",
            crate::count(stores.len(), "store", "stores"),
            crate::count(t.written, "file", "files"),
            t.removed
        );
    }
    if args.with_local_domains {
        write_caddyfile(&ws, &stores)?;
    }
    // Kept for as long as the watch runs; the signal handler stops them.
    let _servers = if args.no_servers {
        None
    } else {
        let specs = server_specs(&ws, &stores, &apps)?;
        info!("[strata] starting {} dev servers", specs.len());
        Some(Supervisor::start(
            &root,
            specs,
            crate::color(std::io::stdout().is_terminal()),
        )?)
    };
    strata_engine::process::exit_on_signal_with(0, || {
        info!("[strata] stopped: every dev server was stopped")
    })?;

    info!(
        "[strata] watching {} for {}; Ctrl-C stops",
        crate::count(watcher.watched(), "folder", "folders"),
        crate::count(stores.len(), "store", "stores")
    );
    loop {
        let Some(batch) = watcher.next_batch(
            Duration::from_secs(3600),
            Duration::from_millis(5),
            Duration::from_millis(60),
        )?
        else {
            continue;
        };
        let started = Instant::now();
        let changed: BTreeSet<String> = batch
            .iter()
            .filter(|p| p.starts_with(&root))
            .map(|p| strata_engine::relative(&root, p))
            .map(|p| match p.strip_suffix(".gitignore") {
                // A `.gitignore` changes what its folder holds: the whole
                // folder is reconciled (the root's covers all of `apps`).
                Some("") => strata_rules::APPS.to_string(),
                Some(dir) if dir.ends_with('/') => dir.trim_end_matches('/').to_string(),
                _ => p,
            })
            .filter(|p| {
                p == strata_rules::APPS
                    || p.starts_with(&format!("{}/", strata_rules::APPS))
                    || *p == strata_rules::CONFIG_FILE
            })
            .collect();
        if changed.is_empty() {
            continue;
        }
        // The tree and the config are read again each batch (a new store
        // folder, a new entry): it costs a few folder reads.
        let before = match Workspace::load(&root) {
            Ok(fresh) => Some(std::mem::replace(&mut ws, fresh)),
            Err(e) => {
                eprintln!("[strata] error: {e}; keeping the last good configuration");
                None
            }
        };
        let now = selected(&ws, &ids);
        let added: Vec<String> = now
            .iter()
            .filter(|s| !stores.contains(s))
            .cloned()
            .collect();
        let removed: Vec<String> = stores
            .iter()
            .filter(|s| !now.contains(s))
            .cloned()
            .collect();
        for store in &removed {
            let dir = root.join(strata_rules::OUT).join(store);
            let _ = std::fs::remove_dir_all(&dir);
            info!(
                "[strata] {store} left the config: removed {}",
                dir.display()
            );
        }
        if !added.is_empty() {
            match strata_rules::compose(&ws, &engine, &added, &|_| {}) {
                Ok(_) => info!("[strata] composed new stores: {}", added.join(", ")),
                Err(e) => eprintln!("[strata] error: {e}"),
            }
        }
        stores = now;
        let mut work: Vec<_> = targets(&ws, &stores, &changed)
            .into_iter()
            .filter(|(s, _, _)| !added.contains(s))
            .collect();
        if let Some(before) = &before
            && changed.contains(strata_rules::CONFIG_FILE)
        {
            // Other `ignorePaths`: the store's apps are reconciled whole.
            for store in stores.iter().filter(|s| !added.contains(s)) {
                if before.ignore_paths(store).ok() != ws.ignore_paths(store).ok() {
                    work.retain(|(s, _, _)| s != store);
                    work.extend(
                        ws.base_apps
                            .iter()
                            .map(|app| (store.clone(), app.clone(), String::new())),
                    );
                }
            }
            if args.with_local_domains
                && let Err(e) = write_caddyfile(&ws, &stores)
            {
                eprintln!("[strata] error: {e}");
            }
        }
        let sources = SourceCache::new();
        let rules = watcher.rules();
        let results: Vec<_> = work
            .par_iter()
            .map(|t| reconcile(&ws, rules, &sources, t))
            .collect();
        let mut updates = Vec::new();
        for result in results {
            match result {
                Ok(u) => updates.extend(u),
                Err(e) => eprintln!("[strata] error: {e}"),
            }
        }
        let touched: BTreeSet<&str> = updates.iter().map(|u| u.store.as_str()).collect();
        let first = changed
            .iter()
            .next()
            .map(|p| strata_engine::display(p).into_owned())
            .unwrap_or_default();
        let more = if changed.len() > 1 {
            format!(" (+{} more)", changed.len() - 1)
        } else {
            String::new()
        };
        info!(
            "[strata] {first}{more}: {} updated in {} in {} ms",
            crate::count(updates.len(), "copy", "copies"),
            if touched.is_empty() {
                "no store".to_string()
            } else {
                touched.into_iter().collect::<Vec<_>>().join(", ")
            },
            started.elapsed().as_millis()
        );
        if verbose > 0 {
            for u in &updates {
                info!(
                    "[strata]   {} {}",
                    u.change,
                    strata_engine::display(&u.path)
                );
            }
        }
    }
}

/// Writes `.out/Caddyfile` for `stores` (whole, or not at all).
fn write_caddyfile(ws: &Workspace, stores: &[String]) -> anyhow::Result<()> {
    let (text, warnings) = strata_rules::caddyfile(ws, stores);
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let out = ws.root().join(strata_rules::OUT);
    std::fs::create_dir_all(&out)?;
    let path = out.join(strata_rules::CADDYFILE);
    strata_engine::write_atomic(&path, text.as_bytes(), false)?;
    info!(
        "[strata] wrote {}: caddy run --config {}",
        path.display(),
        path.display()
    );
    Ok(())
}
