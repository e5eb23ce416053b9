//! `store test`: each selected store's composed test app (Alokai's
//! `playwright`) run against the store's production servers. A test run is
//! a node of the build graph: its inputs are the store's composed test app,
//! the composed apps it serves (their `.env` files included) and their
//! `.deploy` folders, so a store whose inputs are unchanged since a passing
//! run is `cached`.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use strata_engine::{Graph, KeyHasher, process};

use crate::build::Semaphore;
use crate::builder::build_script_named;
use crate::error::{Error, Result};
use crate::nodes::{NodeKind, StoreNode, deploy_id, out_dir, out_id};
use crate::servers::{ServerSpec, StorePorts, Supervisor, production_specs, relay, store_ports};
use crate::toolchain::{PackageManager, which};
use crate::workspace::Workspace;

/// The test app when the config names none.
pub const DEFAULT_TEST_APP: &str = "playwright";

/// How long a server may take to listen on its port.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Everything one store's test run needs.
pub struct TestSpec {
    /// The store.
    pub store: String,
    /// The base app whose `test` script runs.
    pub test_app: String,
    /// The monorepo's root.
    pub root: PathBuf,
    /// The servers it runs against.
    pub servers: Vec<ServerSpec>,
    /// `BASE_URL`: the frontend.
    pub base_url: String,
    /// `MIDDLEWARE_URL`, when the store has a middleware with a port.
    pub middleware_url: Option<String>,
    /// Test runs at once.
    pub slots: Arc<Semaphore>,
    /// Run even when nothing changed since a passing run.
    pub force: bool,
    /// Color the output prefixes.
    pub color: bool,
    /// Arguments for the test script (`--ui`).
    pub script_args: Vec<String>,
}

/// A passing test run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestRecord {
    /// Seconds the test script ran.
    pub seconds: f64,
}

impl TestSpec {
    /// Its node's own parameters, for the key.
    pub(crate) fn salt(&self, hasher: &mut KeyHasher) {
        hasher.str("test/v1").str(&self.store).str(&self.test_app);
        for a in &self.script_args {
            hasher.str(a);
        }
        hasher.str(&self.base_url);
        hasher.str(self.middleware_url.as_deref().unwrap_or(""));
        for s in &self.servers {
            hasher.str(&s.app).u64(s.port.map_or(0, u64::from));
        }
    }

    /// Starts the servers, runs the test script, stops the servers.
    pub(crate) fn run(&self) -> Result<TestRecord> {
        let _permit = self.slots.acquire();
        let failed = |message: String| Error::TestFailed {
            store: self.store.clone(),
            message,
        };
        for s in &self.servers {
            if !s.dir.join("server.js").is_file() {
                return Err(Error::NotBuilt {
                    store: s.store.clone(),
                    app: s.app.clone(),
                    dir: s.dir.clone(),
                });
            }
            // Something else listening there would be tested instead.
            if let Some(port) = s.port
                && listening(port)
            {
                return Err(failed(format!(
                    "port {port} of {} is in use already (a dev server?): stop it, or give the store other localPorts",
                    s.app
                )));
            }
        }
        let supervisor =
            Supervisor::start_with(&self.root, self.servers.clone(), self.color, true)?;
        let outcome = self.wait_ready().and_then(|()| self.script());
        supervisor.stop_own();
        outcome
    }

    /// Waits until every server listens on its port.
    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        for s in &self.servers {
            let Some(port) = s.port else { continue };
            while !listening(port) {
                if Instant::now() > deadline || process::interrupted() {
                    return Err(Error::TestFailed {
                        store: self.store.clone(),
                        message: format!(
                            "{} did not listen on port {port} within {} s (its output is above)",
                            s.app,
                            READY_WITHIN.as_secs()
                        ),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Runs the test app's `test` script; its output is prefixed.
    fn script(&self) -> Result<TestRecord> {
        let dir = self.root.join(out_dir(&self.store, &self.test_app));
        let (pm, _) = PackageManager::detect(&self.root);
        let program = which(pm.program()).ok_or_else(|| Error::Toolchain {
            message: format!("{} is not on PATH; store test needs it", pm.program()),
        })?;
        let mut path = std::ffi::OsString::from(self.root.join("node_modules/.bin"));
        if let Some(p) = std::env::var_os("PATH") {
            path.push(":");
            path.push(p);
        }
        let mut command = Command::new(program);
        command.args(["run", "test"]);
        if !self.script_args.is_empty() {
            // npm passes what follows `--` to the script; yarn and pnpm
            // pass what follows the script's name.
            if pm == PackageManager::Npm {
                command.arg("--");
            }
            command.args(&self.script_args);
        }
        command
            .current_dir(&dir)
            .env("PATH", path)
            .env("BASE_URL", &self.base_url)
            .env("STORE_ID", &self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(url) = &self.middleware_url {
            command.env("MIDDLEWARE_URL", url);
        }
        let label = format!("[{}/{}]", self.store, self.test_app);
        let started = Instant::now();
        let mut child = process::spawn(&mut command).map_err(|e| Error::io(&dir, e))?;
        let mut relays = Vec::new();
        if let Some(out) = child.stdout.take() {
            let label = label.clone();
            relays.push(std::thread::spawn(move || relay(out, &label, true)));
        }
        if let Some(err) = child.stderr.take() {
            let label = label.clone();
            relays.push(std::thread::spawn(move || relay(err, &label, true)));
        }
        let status = process::wait(&mut child).map_err(|e| Error::io(&dir, e))?;
        for r in relays {
            let _ = r.join();
        }
        if !status.success() {
            return Err(Error::TestFailed {
                store: self.store.clone(),
                message: format!(
                    "the tests failed ({}: {status})",
                    out_dir(&self.store, &self.test_app)
                ),
            });
        }
        Ok(TestRecord {
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// The test app of the monorepo: `strata.testApp`, else `playwright`. It
/// must be a base app with a `test` script.
pub fn test_app(ws: &Workspace) -> Result<String> {
    let app = ws
        .config
        .strata
        .test_app
        .clone()
        .unwrap_or_else(|| DEFAULT_TEST_APP.to_string());
    if !ws.base_apps.contains(&app) {
        return Err(Error::Usage {
            message: format!(
                "there is no test app: apps/{app} does not exist (set \"strata\": {{\"testApp\": \"<base app>\"}} in {})",
                crate::config::CONFIG_FILE
            ),
        });
    }
    if build_script_named(ws.root(), &app, "test")?.is_none() {
        return Err(Error::Usage {
            message: format!(
                "apps/{app}/package.json has no \"test\" script for store test to run"
            ),
        });
    }
    Ok(app)
}

/// Options of `store test`.
pub struct TestOptions {
    /// Test runs at once.
    pub jobs: usize,
    /// Run even when nothing changed since a passing run.
    pub force: bool,
    /// Color the output prefixes.
    pub color: bool,
    /// Arguments for each test script (`--ui`).
    pub script_args: Vec<String>,
}

/// Adds a test node per store of `stores` above the build graph `graph`:
/// it reads the store's composed test app, and the composed app folders
/// and `.deploy` folders of the apps it serves. Stores whose ports clash
/// run one after the other.
pub fn add_tests(
    graph: &mut Graph<StoreNode>,
    ws: &Workspace,
    stores: &[String],
    options: &TestOptions,
) -> Result<()> {
    let app = test_app(ws)?;
    let slots = Arc::new(Semaphore::new(options.jobs));
    let mut by_port: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    let settings_ids: Vec<String> = graph
        .edges()
        .into_iter()
        .filter(|(n, _, _)| n.kind() == NodeKind::Setting)
        .map(|(n, _, _)| strata_engine::Node::id(n).to_string())
        .collect();
    for store in stores {
        let mut ports = BTreeMap::new();
        let servers = production_specs(ws, store, &mut ports)?;
        let StorePorts {
            frontend,
            middleware,
        } = store_ports(ws, store);
        let Some(front_port) = frontend else {
            return Err(Error::Usage {
                message: format!(
                    "store {store} has no localPorts entry for its frontend: store test serves it there (BASE_URL)"
                ),
            });
        };
        let id = crate::node_id::NodeId::Test {
            store: store.clone(),
        }
        .to_string();
        let mut inputs = vec![out_id(store, &app)];
        for s in &servers {
            inputs.push(out_id(store, &s.app));
            inputs.push(deploy_id(store, &s.app));
        }
        // The toolchain, the root files, the declared variables, and of
        // the lockfile the closures of the apps it runs.
        let runs: Vec<&str> = std::iter::once(app.as_str())
            .chain(servers.iter().map(|s| s.app.as_str()))
            .collect();
        inputs.extend(
            settings_ids
                .iter()
                .filter(|id| {
                    !id.starts_with("lockfile/")
                        || runs.iter().any(|a| id.ends_with(&format!("/{a}")))
                })
                .cloned(),
        );
        graph.add(StoreNode::Test {
            id: id.clone(),
            spec: Arc::new(TestSpec {
                store: store.clone(),
                test_app: app.clone(),
                root: ws.root().to_path_buf(),
                base_url: format!("http://127.0.0.1:{front_port}"),
                middleware_url: middleware.map(|p| format!("http://127.0.0.1:{p}")),
                servers,
                slots: slots.clone(),
                force: options.force,
                color: options.color,
                script_args: options.script_args.clone(),
            }),
        })?;
        for input in inputs {
            if graph.contains(&input) {
                graph.depend(&id, &input)?;
            }
        }
        for port in ports.into_keys() {
            let earlier = by_port.entry(port).or_default();
            for other in earlier.iter() {
                graph.order(&id, other)?;
            }
            earlier.push(id.clone());
        }
    }
    Ok(())
}

/// How one store's tests went.
#[derive(Clone, Debug, Serialize)]
pub struct StoreTest {
    /// The store.
    pub id: String,
    /// `passed`, `cached` (passed before, nothing changed since),
    /// `failed`, or `skipped` (a build it needs failed).
    pub test: &'static str,
    /// Seconds the test script ran (this run).
    pub seconds: Option<f64>,
}

/// What `store test` did: the build's report, and each store's tests.
pub struct TestReport {
    /// The compose and build of the stores.
    pub build: crate::builder::BuildReport,
    /// Per store, in the order asked.
    pub stores: Vec<StoreTest>,
}

impl TestReport {
    /// Whether any store's tests failed or could not run.
    pub fn failed(&self) -> bool {
        self.stores
            .iter()
            .any(|s| s.test != "passed" && s.test != "cached")
    }
}

/// Composes, builds and prepares `build.stores`, then runs each one's
/// tests (see [`add_tests`]), as one graph.
pub fn test_stores(
    ws: &Workspace,
    engine: &strata_engine::Engine,
    build: &crate::builder::BuildOptions,
    options: &TestOptions,
    observe: &(dyn Fn(&strata_engine::Event) + Sync),
) -> Result<TestReport> {
    let stores: Vec<String> = ws
        .select(&build.stores)?
        .iter()
        .map(|s| s.id.clone())
        .collect();
    let report = crate::builder::build_stores_with(
        ws,
        engine,
        build,
        observe,
        &|graph| add_tests(graph, ws, &stores, options),
        false,
    )?;
    let mut tests = Vec::new();
    for store in &stores {
        let id = crate::node_id::NodeId::Test {
            store: store.clone(),
        }
        .to_string();
        let (test, seconds) = match report.build_status(&id) {
            Some(strata_engine::Status::Cached) => ("cached", None),
            Some(strata_engine::Status::Failed) => ("failed", None),
            Some(strata_engine::Status::Skipped) | None | Some(strata_engine::Status::Planned) => {
                ("skipped", None)
            }
            Some(_) => match engine.load::<StoreNode>(&id).ok().flatten() {
                Some(crate::nodes::StoreValue::Tested(r)) => ("passed", Some(r.seconds)),
                _ => ("passed", None),
            },
        };
        tests.push(StoreTest {
            id: store.clone(),
            test,
            seconds,
        });
    }
    Ok(TestReport {
        build: report,
        stores: tests,
    })
}
