//! The `strata` binary: parse arguments, validate them into options, call
//! the rules, print, and map errors to exit codes (0 ok, 1 a store failed,
//! 2 bad usage or input).

/// `eprintln!` unless `-q` was given: progress and what was done.
macro_rules! info {
    ($($arg:tt)*) => {
        if !$crate::quiet() {
            eprintln!($($arg)*)
        }
    };
}

/// mimalloc: strata allocates many small values (YAML and JSON trees,
/// file lists) from many threads; glibc's allocator spends a fifth of a
/// lockfile's parse in malloc and free (`cargo bench --bench lockfile`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;
mod build;
mod cache;
mod ci;
mod compose;
mod deploy;
mod dev;
mod manage;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use strata_engine::Engine;
use strata_rules::Workspace;

use args::{Cli, Command, GraphFormat, StoreCommand};

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// "1 store", "3 stores": `n` and the noun, `plural` unless `n` is 1.
pub fn count(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// Whether `-q` asked for warnings, errors and requested output only.
pub fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether to color output going to a stream that `is_terminal` or not:
/// never with `NO_COLOR` set (https://no-color.org) or on a dumb terminal.
pub fn color(is_terminal: bool) -> bool {
    color_with(
        is_terminal,
        std::env::var_os("NO_COLOR"),
        std::env::var_os("TERM"),
    )
}

fn color_with(
    is_terminal: bool,
    no_color: Option<std::ffi::OsString>,
    term: Option<std::ffi::OsString>,
) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

fn main() -> ExitCode {
    load_dotenv();
    let cli = Cli::parse();
    QUIET.store(cli.quiet, std::sync::atomic::Ordering::Relaxed);
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", message(&error));
            ExitCode::from(exit_code(&error))
        }
    }
}

/// Credentials and URLs from a `.env` file at the root (or the current
/// folder), for the variables the environment does not set already. Only
/// strata's own variables are read: the rest of the file is the apps'.
fn load_dotenv() {
    const KEYS: &[&str] = &[
        "CLI_CLOUD_USERNAME",
        "CLI_CLOUD_PASSWORD",
        "CLI_DOCKER_REGISTRY_URL",
        "CLI_CONSOLE_URL",
    ];
    // `args_os`: an argument that is not UTF-8 is clap's to report, not a
    // panic here.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let root: std::ffi::OsString = args
        .iter()
        .position(|a| a == "--root")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            args.iter().find_map(|a| {
                a.to_str()
                    .and_then(|a| a.strip_prefix("--root="))
                    .map(Into::into)
            })
        })
        .unwrap_or_else(|| ".".into());
    let Ok(entries) = dotenvy::from_path_iter(PathBuf::from(root).join(".env")) else {
        return;
    };
    for (key, value) in entries.flatten() {
        if KEYS.contains(&key.as_str()) && std::env::var_os(&key).is_none() {
            // SAFETY: set before any thread is started.
            unsafe { std::env::set_var(key, value) };
        }
    }
}

/// A spinner on stderr when it is a terminal and the output is not JSON.
pub fn spinner(json: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    (std::io::stderr().is_terminal() && !json && !quiet()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {wide_msg}")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    })
}

/// The error and its causes, each said once (an I/O error's message holds
/// its cause already).
fn message(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    // Only --no-wait makes a held lock an error.
    if error.chain().any(|c| {
        matches!(
            c.downcast_ref::<strata_engine::Error>(),
            Some(strata_engine::Error::Busy { .. })
        )
    }) {
        out.push_str(", or without --no-wait to wait for it");
    }
    out
}

fn exit_code(error: &anyhow::Error) -> u8 {
    let bad_input = error.chain().any(|cause| {
        cause
            .downcast_ref::<strata_rules::Error>()
            .is_some_and(strata_rules::Error::is_bad_input)
            || cause
                .downcast_ref::<strata_engine::Error>()
                .is_some_and(|e| {
                    matches!(e, strata_engine::Error::Busy { .. }) || e.is_permission_denied()
                })
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    });
    if bad_input { 2 } else { 1 }
}

/// Options every command shares, validated.
pub struct Setup {
    /// The monorepo, loaded.
    pub workspace: Workspace,
    /// Where the state lives.
    pub state_dir: PathBuf,
    /// `-v` count.
    pub verbose: u8,
    /// The locks on the repository and the state folder, held until exit.
    _locks: Vec<strata_engine::Lock>,
}

impl Setup {
    fn new(cli: &Cli) -> anyhow::Result<Setup> {
        let root = std::path::absolute(&cli.root)
            .with_context(|| format!("--root {}", cli.root.display()))?;
        let workspace = Workspace::load(&root)?;
        for key in &workspace.config.unknown_keys {
            eprintln!(
                "warning: {}: unknown key {key} (ignored; a typo?)",
                workspace.config.path.display()
            );
        }
        let state_dir = match &cli.cache_dir {
            Some(dir) => std::path::absolute(dir)?,
            None => root.join(".strata"),
        };
        let locks = if writes(&cli.command) {
            lock(command_name(&cli.command), &root, &state_dir, cli.no_wait)?
        } else {
            Vec::new()
        };
        Ok(Setup {
            workspace,
            state_dir,
            verbose: cli.verbose,
            _locks: locks,
        })
    }

    /// The store ids a selection names (empty: all deployable stores).
    pub fn ids(selection: &args::Selection) -> Vec<String> {
        if selection.all {
            Vec::new()
        } else {
            selection.stores.clone()
        }
    }

    /// The engine, with its database in the state folder.
    pub fn engine(&self) -> anyhow::Result<Engine> {
        Self::open_engine(&self.state_dir)
    }

    /// The engine whose state is in `state_dir`.
    pub fn open_engine(state_dir: &std::path::Path) -> anyhow::Result<Engine> {
        let engine = Engine::open(&state_dir.join("db"))?;
        if let Some(note) = engine.db().recovered() {
            eprintln!("warning: {note}");
        }
        Ok(engine)
    }
}

/// `store deploy` and the like.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Cache(args::CacheCommand::Verify { .. }) => "cache verify",
        Command::Cache(args::CacheCommand::Gc { .. }) => "cache gc",
        Command::Store(c) => match c {
            StoreCommand::Compose(_) => "store compose",
            StoreCommand::Build(_) => "store build",
            StoreCommand::Graph(_) => "store graph",
            StoreCommand::Explain(_) => "store explain",
            StoreCommand::Changed(_) => "store changed",
            StoreCommand::Deploy(_) => "store deploy",
            StoreCommand::Dev(_) => "store dev",
            StoreCommand::Add(_) => "store add",
            StoreCommand::Move(_) => "store move",
            StoreCommand::Start(_) => "store start",
            StoreCommand::Lint(_) => "store lint",
            StoreCommand::Tsconfig(_) => "store tsconfig",
            StoreCommand::Test(_) => "store test",
        },
        Command::Completions { .. } => "completions",
    }
}

/// Whether the command writes `.out` or the state (so it takes the locks).
fn writes(command: &Command) -> bool {
    match command {
        // The node graph opens the state (and records the toolchain).
        Command::Store(StoreCommand::Graph(args)) => args.nodes,
        _ => !matches!(
            command,
            Command::Store(
                StoreCommand::Changed(_) | StoreCommand::Lint(_) | StoreCommand::Start(_)
            ) | Command::Completions { .. }
        ),
    }
}

/// Takes the state folder's lock, then the repository's (a lock on its
/// folder: nothing is written in it): one strata at a time writes a `.out`
/// or a state database. Always in this order, so two processes cannot each
/// hold what the other waits for.
fn lock(
    name: &str,
    root: &std::path::Path,
    state_dir: &std::path::Path,
    no_wait: bool,
) -> anyhow::Result<Vec<strata_engine::Lock>> {
    // The command's name only: its arguments may hold a password.
    let me = format!("strata {name} (pid {})", std::process::id());
    let state = lock_state(&me, state_dir, no_wait)?;
    let repo = strata_engine::Lock::acquire_dir(root, !no_wait, &|holder| {
        eprintln!(
            "[strata] waiting for {holder} working on {} to finish",
            root.display()
        )
    })?;
    // With both locks held: what a killed run left running is stopped
    // before anything reads the folders it was writing.
    let stopped = strata_engine::process::track(&state_dir.join("children"))
        .with_context(|| format!("{}", state_dir.join("children").display()))?;
    if stopped > 0 {
        eprintln!("[strata] stopped {stopped} process group(s) a killed run left running");
    }
    Ok(vec![state, repo])
}

/// The state folder's lock.
fn lock_state(
    me: &str,
    state_dir: &std::path::Path,
    no_wait: bool,
) -> anyhow::Result<strata_engine::Lock> {
    let path = state_dir.join("lock");
    Ok(strata_engine::Lock::acquire(
        &path,
        me,
        !no_wait,
        &|holder| {
            eprintln!(
                "[strata] waiting for {holder} to finish (lock {})",
                path.display()
            )
        },
    )?)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Completions { shell } = &cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(*shell, &mut command, "strata", &mut std::io::stdout());
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Store(StoreCommand::Changed(args)) = &cli.command {
        // Reads git, not the working tree: needs no loadable workspace.
        return changed(&cli, args);
    }
    if let Command::Cache(command) = &cli.command {
        // Needs the state folder only, not a loadable workspace.
        let root = std::path::absolute(&cli.root)?;
        let state_dir = match &cli.cache_dir {
            Some(dir) => std::path::absolute(dir)?,
            None => root.join(".strata"),
        };
        let me = format!(
            "strata {} (pid {})",
            command_name(&cli.command),
            std::process::id()
        );
        let _lock = lock_state(&me, &state_dir, cli.no_wait)?;
        return cache::run(&state_dir, command);
    }
    let cx = Setup::new(&cli)?;
    match &cli.command {
        Command::Store(StoreCommand::Compose(args)) => {
            compose::run(&cx, &args.selection, args.json)
        }
        Command::Store(StoreCommand::Build(args)) => {
            if args.compose_only {
                compose::run(&cx, &args.selection, args.json)
            } else {
                build::run(&cx, args)
            }
        }
        Command::Store(StoreCommand::Graph(args)) if args.nodes => {
            let engine = cx.engine()?;
            let options = deploy::graph_options(&cx, args.stores.clone());
            let picture = strata_rules::node_picture(&cx.workspace, &engine, &options)?;
            match args.format {
                GraphFormat::Dot => print!("{}", picture.dot()),
                GraphFormat::Mermaid => print!("{}", picture.mermaid()),
                GraphFormat::Json => println!("{}", serde_json::to_string_pretty(&picture)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Store(StoreCommand::Graph(args)) => {
            let tree = strata_rules::tree(&cx.workspace);
            match args.format {
                GraphFormat::Dot => print!("{}", tree.dot()),
                GraphFormat::Mermaid => print!("{}", tree.mermaid()),
                GraphFormat::Json => println!("{}", serde_json::to_string_pretty(&tree)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Store(StoreCommand::Explain(args)) if args.deploy => {
            deploy::explain(&cx, &args.id, args.json)
        }
        Command::Store(StoreCommand::Explain(args)) => {
            let engine = cx.engine()?;
            let explanation =
                strata_rules::explain(&cx.workspace, &engine, &args.id, args.file.as_deref())?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&explanation)?);
            } else {
                print!("{explanation}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Store(StoreCommand::Add(args)) => manage::add(&cx, args),
        Command::Store(StoreCommand::Move(args)) => manage::move_stores(&cx, args),
        Command::Store(StoreCommand::Lint(args)) => manage::lint(&cx, args),
        Command::Store(StoreCommand::Tsconfig(args)) => manage::tsconfig(&cx, args),
        Command::Store(StoreCommand::Test(args)) => test::run(&cx, args),
        Command::Store(StoreCommand::Start(args)) => manage::start(cx, args),
        Command::Store(StoreCommand::Changed(_))
        | Command::Cache(_)
        | Command::Completions { .. } => {
            unreachable!("handled above")
        }
        Command::Store(StoreCommand::Deploy(args)) => deploy::run(&cx, args),
        Command::Store(StoreCommand::Dev(args)) => dev::run(cx, args),
    }
}

fn changed(cli: &Cli, args: &args::ChangedArgs) -> anyhow::Result<ExitCode> {
    let root = std::path::absolute(&cli.root)?;
    let report = strata_rules::changed(
        &root,
        &strata_rules::ChangedOptions {
            since: args.since.clone(),
            to: args.to.clone(),
            uncommitted: args.uncommitted,
            global_dependencies: args.global_dependencies.clone(),
        },
    )?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    if args.condensed {
        println!("{}", serde_json::to_string(&report.ids())?);
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::color_with;

    #[test]
    fn colors_only_on_a_terminal_without_no_color() {
        assert!(color_with(true, None, Some("xterm-256color".into())));
        assert!(!color_with(false, None, Some("xterm".into())));
        assert!(!color_with(true, Some("1".into()), Some("xterm".into())));
        // An empty NO_COLOR is as if unset (no-color.org).
        assert!(color_with(true, Some("".into()), None));
        assert!(!color_with(true, None, Some("dumb".into())));
    }
}
