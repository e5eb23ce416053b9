//! Servers: each selected store's apps run their `dev` script in their
//! composed folder (`store dev`), or their built `.deploy/server.js`
//! (`store start`), on the ports `localPorts` gives, with every output line
//! prefixed `[store/app]`; a crashed server restarts with backoff.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strata_engine::process;

use crate::builder::build_script_named;
use crate::error::{Error, Result};
use crate::nodes::out_dir;
use crate::prepare::{MIDDLEWARE_APP, NEXTJS_APP, NUXT_APP};
use crate::toolchain::{PackageManager, which};
use crate::workspace::Workspace;

/// One server to run.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// The store.
    pub store: String,
    /// The app.
    pub app: String,
    /// Where it runs.
    pub dir: PathBuf,
    /// Its port, when the config gives one.
    pub port: Option<u16>,
    /// What runs.
    pub run: Run,
}

/// What a server runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Run {
    /// A package script (`dev`), with the repository's package manager.
    Script(String),
    /// `node server.js` in a built `.deploy` folder, as the image runs it.
    Node,
}

/// The `localPorts` key of an app.
pub fn port_key(app: &str) -> &str {
    match app {
        MIDDLEWARE_APP => "middleware",
        NEXTJS_APP => "nextjs",
        NUXT_APP => "nuxt",
        other => other,
    }
}

/// The ports `localPorts` gives a store's deployed frontend (Next.js or
/// Nuxt) and its middleware.
pub(crate) struct StorePorts {
    /// The frontend's.
    pub frontend: Option<u16>,
    /// The middleware's.
    pub middleware: Option<u16>,
}

/// The frontend's and the middleware's ports of `store`.
pub(crate) fn store_ports(ws: &Workspace, store: &str) -> StorePorts {
    let apps = crate::prepare::deployed_apps(ws, store);
    let port = |wanted: &[&str]| {
        let app = apps.iter().find(|a| wanted.contains(&a.as_str()))?;
        ws.config
            .stores
            .get(store)?
            .local_ports
            .get(port_key(app))
            .copied()
    };
    StorePorts {
        frontend: port(&[NEXTJS_APP, NUXT_APP]),
        middleware: port(&[MIDDLEWARE_APP]),
    }
}

/// The port `localPorts` gives `app` of `store`, claimed in `ports`: two
/// servers on one port are an error.
fn claim_port(
    ws: &Workspace,
    ports: &mut BTreeMap<u16, String>,
    settings: &crate::config::StoreSettings,
    store: &str,
    app: &str,
) -> Result<Option<u16>> {
    let port = settings.local_ports.get(port_key(app)).copied();
    if let Some(p) = port
        && let Some(other) = ports.insert(p, format!("{store}/{app}"))
    {
        return Err(Error::PortClash {
            port: p,
            first: other,
            second: format!("{store}/{app}"),
            config: ws.config.path.clone(),
        });
    }
    Ok(port)
}

/// The servers of `stores` for `apps` (those with a `dev` script). Two
/// servers on one port are an error, before anything starts.
pub fn server_specs(ws: &Workspace, stores: &[String], apps: &[String]) -> Result<Vec<ServerSpec>> {
    let mut specs = Vec::new();
    let mut ports: BTreeMap<u16, String> = BTreeMap::new();
    for store in stores {
        let settings = ws.config.stores.get(store).cloned().unwrap_or_default();
        for app in apps {
            if build_script_named(ws.root(), app, "dev")?.is_none() {
                continue;
            }
            let port = claim_port(ws, &mut ports, &settings, store, app)?;
            specs.push(ServerSpec {
                store: store.clone(),
                app: app.clone(),
                dir: ws.root().join(out_dir(store, app)),
                port,
                run: Run::Script("dev".into()),
            });
        }
    }
    Ok(specs)
}

/// The production servers of built `stores`: each deployed app's
/// `.deploy/server.js`, on the ports `localPorts` gives. A store that is
/// not built, and two servers on one port, are errors before anything
/// starts.
pub fn start_specs(ws: &Workspace, stores: &[String]) -> Result<Vec<ServerSpec>> {
    let mut specs = Vec::new();
    let mut ports: BTreeMap<u16, String> = BTreeMap::new();
    for store in stores {
        for spec in production_specs(ws, store, &mut ports)? {
            if !spec.dir.join("server.js").is_file() {
                return Err(Error::NotBuilt {
                    store: spec.store,
                    app: spec.app,
                    dir: spec.dir,
                });
            }
            specs.push(spec);
        }
    }
    Ok(specs)
}

/// The production servers of `store` (built or not yet), their ports
/// claimed in `ports`.
pub(crate) fn production_specs(
    ws: &Workspace,
    store: &str,
    ports: &mut BTreeMap<u16, String>,
) -> Result<Vec<ServerSpec>> {
    let settings = ws.config.stores.get(store).cloned().unwrap_or_default();
    let mut specs = Vec::new();
    for app in crate::prepare::deployed_apps(ws, store) {
        let dir = ws
            .root()
            .join(out_dir(store, &app))
            .join(crate::prepare::DEPLOY);
        let port = claim_port(ws, ports, &settings, store, &app)?;
        specs.push(ServerSpec {
            store: store.to_string(),
            app,
            dir,
            port,
            run: Run::Node,
        });
    }
    Ok(specs)
}

/// Running servers; dropping it does not stop them ([`Supervisor::stop`]
/// does, as the signal handler does).
pub struct Supervisor {
    stopping: Arc<AtomicBool>,
    /// The process groups of the servers running now.
    groups: Arc<std::sync::Mutex<std::collections::HashSet<i32>>>,
    /// The supervising threads.
    threads: Vec<std::thread::JoinHandle<()>>,
}

const COLORS: &[&str] = &["36", "33", "35", "32", "34", "31"];

impl Supervisor {
    /// Starts every server, each in its own process group, restarting it
    /// with backoff when it exits.
    pub fn start(
        root: &std::path::Path,
        specs: Vec<ServerSpec>,
        color: bool,
    ) -> Result<Supervisor> {
        Self::start_with(root, specs, color, false)
    }

    /// [`Supervisor::start`], all of the servers' output going to stderr
    /// (stdout holds a report).
    pub fn start_with(
        root: &std::path::Path,
        specs: Vec<ServerSpec>,
        color: bool,
        all_to_stderr: bool,
    ) -> Result<Supervisor> {
        let (pm, _) = PackageManager::detect(root);
        let tool = if specs.iter().all(|s| s.run == Run::Node) {
            "node"
        } else {
            pm.program()
        };
        let program = which(tool).ok_or_else(|| Error::Toolchain {
            message: format!("{tool} is not on PATH; the servers need it"),
        })?;
        let node = which("node").unwrap_or_else(|| program.clone());
        let bin = root.join("node_modules/.bin");
        let stopping = Arc::new(AtomicBool::new(false));
        let groups = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let mut threads = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let label = format!("[{}/{}]", spec.store, spec.app);
            let label = if color {
                format!("\x1b[{}m{label}\x1b[0m", COLORS[i % COLORS.len()])
            } else {
                label
            };
            let program = match spec.run {
                Run::Node => node.clone(),
                Run::Script(_) => program.clone(),
            };
            let (bin, stopping, running) = (bin.clone(), stopping.clone(), groups.clone());
            threads.push(std::thread::spawn(move || {
                supervise(
                    &program,
                    &bin,
                    &spec,
                    &label,
                    &stopping,
                    &running,
                    all_to_stderr,
                )
            }));
        }
        Ok(Supervisor {
            stopping,
            groups,
            threads,
        })
    }

    /// Stops every process strata started (servers, and anything else).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        process::stop_all(Duration::from_secs(5));
    }

    /// Stops this supervisor's servers alone (their process trees), and
    /// waits until none is restarted.
    pub fn stop_own(self) {
        self.stopping.store(true, Ordering::SeqCst);
        let groups: Vec<i32> = self.groups.lock().unwrap().iter().copied().collect();
        process::stop_groups(&groups, Duration::from_secs(5));
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn supervise(
    program: &std::path::Path,
    bin: &std::path::Path,
    spec: &ServerSpec,
    label: &str,
    stopping: &AtomicBool,
    running: &std::sync::Mutex<std::collections::HashSet<i32>>,
    all_to_stderr: bool,
) {
    let mut backoff = Duration::from_secs(1);
    while !stopping.load(Ordering::SeqCst) {
        let mut path = std::ffi::OsString::from(bin);
        if let Some(p) = std::env::var_os("PATH") {
            path.push(":");
            path.push(p);
        }
        let mut command = Command::new(program);
        if let Run::Node = spec.run {
            // First: what strata sets below (the port, production) wins.
            for (key, value) in production_env(spec.dir.parent().unwrap_or(&spec.dir)) {
                command.env(key, value);
            }
        }
        match &spec.run {
            Run::Script(name) => command.args(["run", name]),
            // As the image runs it (Next.js's standalone server listens on
            // HOSTNAME, which a container sets to its own name).
            Run::Node => command
                .arg("server.js")
                .env("NODE_ENV", "production")
                .env("HOSTNAME", "0.0.0.0"),
        };
        command
            .current_dir(&spec.dir)
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(port) = spec.port {
            command.env("PORT", port.to_string());
            if spec.app == NUXT_APP {
                command
                    .env("NUXT_PORT", port.to_string())
                    .env("NITRO_PORT", port.to_string());
            }
        }
        let started = Instant::now();
        let mut child = {
            // Registered before a stop can look: a server started while
            // its supervisor stops is stopped too.
            let mut running = running.lock().unwrap();
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            match process::spawn(&mut command) {
                Ok(c) => {
                    running.insert(c.id() as i32);
                    c
                }
                Err(e) => {
                    eprintln!("{label} could not start: {e}");
                    return;
                }
            }
        };
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let label = label.to_string();
            readers.push(std::thread::spawn(move || {
                relay(out, &label, all_to_stderr)
            }));
        }
        if let Some(err) = child.stderr.take() {
            let label = label.to_string();
            readers.push(std::thread::spawn(move || relay(err, &label, true)));
        }
        let status = process::wait(&mut child);
        running.lock().unwrap().remove(&(child.id() as i32));
        for r in readers {
            let _ = r.join();
        }
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_secs(1);
        }
        let how = status
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        eprintln!(
            "{label} exited ({how}); restarting in {}s",
            backoff.as_secs()
        );
        // In steps: a stop does not wait for the backoff.
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stopping.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// The settings of the composed `.env` files of the app folder `app_dir`
/// that a production server sees, as Next.js loads them for production:
/// `.env.production.local`, `.env.local`, `.env.production`, then `.env`,
/// the first that sets a name wins, and strata's own environment (and what
/// it sets for the server: `PORT`, `NODE_ENV`, `HOSTNAME`) wins over all of
/// them. (The image has none of these files; the console sets the
/// environment there.)
pub fn production_env(app_dir: &std::path::Path) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for name in [
        ".env.production.local",
        ".env.local",
        ".env.production",
        ".env",
    ] {
        let path = app_dir.join(name);
        let Ok(entries) = dotenvy::from_path_iter(&path) else {
            continue;
        };
        for entry in entries {
            match entry {
                Ok((key, value)) => {
                    if std::env::var_os(&key).is_none() && seen.insert(key.clone()) {
                        out.push((key, value));
                    }
                }
                // Said, never the line itself (it may hold a secret).
                Err(e) => {
                    let what = match e {
                        dotenvy::Error::LineParse(_, at) => format!("cannot read it at byte {at}"),
                        other => other.to_string(),
                    };
                    eprintln!(
                        "warning: {}: {what} (quote values with spaces); the rest of the file is not read",
                        path.display()
                    );
                    break;
                }
            }
        }
    }
    out
}

pub(crate) fn relay(stream: impl std::io::Read, label: &str, to_stderr: bool) {
    for line in BufReader::new(stream).lines().map_while(|l| l.ok()) {
        if to_stderr {
            let _ = writeln!(std::io::stderr().lock(), "{label} {line}");
        } else {
            let _ = writeln!(std::io::stdout().lock(), "{label} {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::production_env;

    #[test]
    fn production_env_follows_next_js_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "GREETING=\"hello from .env\"\nSHARED=env\nPATH=/from/the/file\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".env.local"), "SHARED=local\n").unwrap();
        std::fs::write(dir.path().join(".env.development"), "DEV=1\n").unwrap();
        let env: std::collections::BTreeMap<String, String> =
            production_env(dir.path()).into_iter().collect();
        assert_eq!(
            env.get("GREETING").map(String::as_str),
            Some("hello from .env")
        );
        assert_eq!(env.get("SHARED").map(String::as_str), Some("local"));
        assert!(!env.contains_key("DEV"));
        // strata's own environment wins (PATH is always set).
        assert!(!env.contains_key("PATH"));
    }
}
