//! A run of the graph: the engine and its records (persistence), the
//! options and outcome of a run. Its steps are beside it: `run/log.rs`
//! (what happened and why), `run/schedule.rs` (which node runs when, in
//! parallel), `run/step.rs` (a node's key, the check of its record, its
//! computation).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use petgraph::graph::NodeIndex;
use serde::{Deserialize, Serialize};

mod log;
mod schedule;
mod step;

pub use log::{Event, RunLog, Status, TraceEvent};
pub use schedule::OnFailure;
pub use step::Inputs;

use schedule::{Ready, Schedule};
use step::{Running, Slot};

use crate::db::{Db, Tree};
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::hash::ContentHash;
use crate::node::Node;
use crate::statcache::StatCache;

/// The engine: a state database and the scheduler that uses it.
#[derive(Clone)]
pub struct Engine {
    db: Db,
    records: Tree,
    values: Tree,
    stat: StatCache,
}

/// What is recorded of a node after it ran.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
struct Record {
    key: ContentHash,
    output: ContentHash,
    /// What the key was made of, to say which input changed.
    salt: ContentHash,
    inputs: Vec<(String, ContentHash)>,
}

/// The outcome of running a graph: the log and each failed node's error.
pub struct Outcome<N: Node> {
    /// What happened to each node.
    pub log: RunLog,
    /// The failed nodes' errors, by node id.
    pub errors: Vec<(String, N::Error)>,
    values: Vec<Option<Arc<N::Value>>>,
    graph_ids: Vec<String>,
}

impl<N: Node> Outcome<N> {
    /// The value a node computed in this run, if it was computed.
    pub fn value(&self, id: &str) -> Option<Arc<N::Value>> {
        let i = self.graph_ids.iter().position(|x| x == id)?;
        self.values[i].clone()
    }
}

/// How to run a graph.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// What a failure does.
    pub on_failure: OnFailure,
    /// The number of threads (default: rayon's global pool, one per core).
    /// Nodes that wait on child processes want more than the cores.
    pub threads: Option<usize>,
    /// Compute nothing but volatile nodes (which only read), record
    /// nothing, and report what would run as [`Status::Planned`].
    pub dry_run: bool,
    /// Check the recorded values of nodes that are
    /// [`Node::checked_on_demand`] only when a dependent computes from
    /// them: a run whose goals are all cached does not look at the
    /// intermediate files they were made from.
    pub on_demand: bool,
}

impl RunOptions {
    /// Default threads, with this failure policy.
    pub fn new(on_failure: OnFailure) -> Self {
        RunOptions {
            on_failure,
            threads: None,
            dry_run: false,
            on_demand: false,
        }
    }
}

impl Engine {
    /// An engine whose state lives in the database folder `path`.
    pub fn open(path: &std::path::Path) -> Result<Engine> {
        let db = Db::open(path)?;
        Ok(Engine {
            records: db.tree("records")?,
            values: db.tree("values")?,
            stat: StatCache::new(db.tree("stat")?),
            db,
        })
    }

    /// The stat cache of file digests.
    pub fn stat_cache(&self) -> &StatCache {
        &self.stat
    }

    /// The database, for callers that keep state of their own.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Runs every node of `graph` that needs it, each as soon as what it
    /// waits for is done, in parallel.
    pub fn run<N: Node>(&self, graph: &Graph<N>, on_failure: OnFailure) -> Result<Outcome<N>> {
        self.run_with(graph, RunOptions::new(on_failure), &|_| {})
    }

    /// Like [`Engine::run`], calling `observe` as each node finishes (for
    /// progress displays).
    pub fn run_observed<N: Node>(
        &self,
        graph: &Graph<N>,
        on_failure: OnFailure,
        observe: &(dyn Fn(&Event) + Sync),
    ) -> Result<Outcome<N>> {
        self.run_with(graph, RunOptions::new(on_failure), observe)
    }

    /// Runs the graph with explicit options.
    pub fn run_with<N: Node>(
        &self,
        graph: &Graph<N>,
        options: RunOptions,
        observe: &(dyn Fn(&Event) + Sync),
    ) -> Result<Outcome<N>> {
        graph.check_acyclic()?;
        let running = Running {
            engine: self,
            graph,
            slots: (0..graph.len())
                .map(|_| Slot {
                    output: OnceLock::new(),
                    value: OnceLock::new(),
                    failed: OnceLock::new(),
                    planned: OnceLock::new(),
                    deferred: OnceLock::new(),
                    demand: Mutex::new(()),
                })
                .collect(),
            dry_run: options.dry_run,
            on_demand: options.on_demand,
            late: Mutex::new(Vec::new()),
            late_errors: Mutex::new(Vec::new()),
        };
        let schedule = Schedule {
            running: &running,
            waiting: (0..graph.len())
                .map(|i| AtomicUsize::new(graph.predecessors(NodeIndex::new(i)).count()))
                .collect(),
            stop: AtomicBool::new(false),
            on_failure: options.on_failure,
            started: Instant::now(),
            log: Mutex::new(RunLog::default()),
            errors: Mutex::new(Vec::new()),
            observe,
            ready: Mutex::new(Ready::default()),
            wake: std::sync::Condvar::new(),
            boosted: (0..graph.len()).map(|_| AtomicBool::new(false)).collect(),
            done: (0..graph.len()).map(|_| AtomicBool::new(false)).collect(),
        };
        // The roots are found before any node runs: once one runs, the
        // counts of others drop to zero, and those are started by their
        // last predecessor, never a second time from here.
        let roots: Vec<usize> = (0..graph.len())
            .filter(|&i| schedule.waiting[i].load(Ordering::Acquire) == 0)
            .collect();
        for i in roots {
            schedule.push(NodeIndex::new(i));
        }
        let workers = options
            .threads
            .unwrap_or_else(rayon::current_num_threads)
            .max(1);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| schedule.work());
            }
        });
        self.db.flush()?;
        let Schedule { log, errors, .. } = schedule;
        let mut log = log.into_inner().unwrap();
        // A deferred check that found the files changed: the node ran
        // inside the dependent that read it.
        for (id, status) in running.late.lock().unwrap().drain(..) {
            if let Some(event) = log.events.iter_mut().find(|e| e.id == id) {
                event.status = status;
                event.reason = (status != Status::Failed).then(|| {
                    "its recorded outputs changed on disk (found when a dependent read them)".into()
                });
            }
        }
        let mut errors = errors.into_inner().unwrap();
        errors.append(&mut running.late_errors.lock().unwrap());
        errors.sort_by(|a, b| a.0.cmp(&b.0));
        let graph_ids = (0..graph.len())
            .map(|i| graph.node(NodeIndex::new(i)).id().to_string())
            .collect();
        Ok(Outcome {
            log,
            errors,
            values: running
                .slots
                .into_iter()
                .map(|s| s.value.into_inner())
                .collect(),
            graph_ids,
        })
    }

    /// Forgets a node's record and value, so that it runs next time.
    pub fn forget(&self, id: &str) -> Result<()> {
        self.records.remove(id.as_bytes())?;
        self.values.remove(id.as_bytes())
    }

    /// The ids of recorded nodes that start with `prefix`.
    pub fn recorded_ids(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .records
            .keys_with_prefix(prefix.as_bytes())?
            .into_iter()
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .collect())
    }

    /// The value recorded for node `id` by its last run, if any and if it
    /// still decodes.
    pub fn load<N: Node>(&self, id: &str) -> Result<Option<N::Value>> {
        let Some(bytes) = self.values.get(id.as_bytes())? else {
            return Ok(None);
        };
        // A value written by another version of strata is simply absent.
        Ok(postcard::from_bytes(&bytes).ok())
    }

    /// The output hash recorded for node `id`.
    pub fn recorded_output(&self, id: &str) -> Result<Option<ContentHash>> {
        Ok(self.record(id)?.map(|r| r.output))
    }

    /// The key recorded for node `id` by its last run.
    pub fn recorded_key(&self, id: &str) -> Result<Option<ContentHash>> {
        Ok(self.record(id)?.map(|r| r.key))
    }

    fn record(&self, id: &str) -> Result<Option<Record>> {
        Ok(self
            .records
            .get(id.as_bytes())?
            .and_then(|b| postcard::from_bytes(&b).ok()))
    }

    fn set_record(&self, id: &str, record: Record) -> Result<()> {
        let bytes = postcard::to_stdvec(&record).expect("a record always encodes");
        self.records.insert(id.as_bytes(), &bytes)
    }

    fn store<N: Node>(&self, id: &str, value: &N::Value) -> Result<()> {
        let bytes = postcard::to_stdvec(value).map_err(|e| Error::Decode {
            node: id.to_string(),
            message: e.to_string(),
        })?;
        self.values.insert(id.as_bytes(), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::RwLock;

    use super::*;
    use crate::node::Computed;

    /// A toy world: named cells a volatile node reads.
    type World = Arc<RwLock<HashMap<String, i64>>>;

    enum Toy {
        /// Reads a cell.
        Read(String, World),
        /// Its dependency's value, rounded down to a multiple of ten.
        Tens(String),
        /// Sum of its dependencies.
        Sum(String, Vec<String>),
    }

    impl Node for Toy {
        type Value = i64;
        type Error = Error;

        fn id(&self) -> &str {
            match self {
                Toy::Read(id, _) | Toy::Tens(id) | Toy::Sum(id, _) => id,
            }
        }

        fn salt(&self) -> ContentHash {
            ContentHash::of(self.id().as_bytes())
        }

        fn volatile(&self) -> bool {
            matches!(self, Toy::Read(..))
        }

        fn compute(&self, inputs: &Inputs<'_, Self>) -> Result<Computed<i64>> {
            let value = match self {
                Toy::Read(id, world) => world.read().unwrap()[id.as_str()],
                Toy::Tens(id) => {
                    let src = id.trim_start_matches("tens-");
                    *inputs.dependency(src)? / 10 * 10
                }
                Toy::Sum(_, deps) => {
                    let mut total = 0;
                    for d in deps {
                        total += *inputs.dependency(d)?;
                    }
                    total
                }
            };
            Ok(Computed::new(value, ContentHash::of(&value.to_le_bytes())))
        }
    }

    fn graph(world: &World) -> Graph<Toy> {
        let mut g = Graph::new();
        for cell in ["a", "b"] {
            g.add(Toy::Read(cell.into(), world.clone())).unwrap();
            g.add(Toy::Tens(format!("tens-{cell}"))).unwrap();
            g.depend(&format!("tens-{cell}"), cell).unwrap();
        }
        g.add(Toy::Sum(
            "sum".into(),
            vec!["tens-a".into(), "tens-b".into()],
        ))
        .unwrap();
        g.depend("sum", "tens-a").unwrap();
        g.depend("sum", "tens-b").unwrap();
        g
    }

    #[test]
    fn early_cutoff_and_cached_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let world: World = Arc::new(RwLock::new(HashMap::from([
            ("a".to_string(), 11),
            ("b".to_string(), 25),
        ])));
        let g = graph(&world);

        let first = engine.run(&g, OnFailure::Stop).unwrap();
        assert_eq!(
            first.log.recomputed(),
            ["a", "b", "sum", "tens-a", "tens-b"]
        );
        assert_eq!(*first.value("sum").unwrap(), 30);

        // Nothing changed: only the volatile reads ran, and found no change.
        let second = engine.run(&g, OnFailure::Stop).unwrap();
        assert!(second.log.recomputed().is_empty());
        assert_eq!(second.log.status("a"), Some(Status::Checked));
        assert_eq!(second.log.status("sum"), Some(Status::Cached));

        // a: 11 -> 12 changes `a` and recomputes `tens-a`, whose output (10)
        // is unchanged: `sum` is cut off.
        world.write().unwrap().insert("a".into(), 12);
        let third = engine.run(&g, OnFailure::Stop).unwrap();
        third.log.assert_recomputed("", &["a", "tens-a"]);
        assert_eq!(third.log.status("tens-a"), Some(Status::Unchanged));

        // b: 25 -> 31 goes all the way through.
        world.write().unwrap().insert("b".into(), 31);
        let fourth = engine.run(&g, OnFailure::Stop).unwrap();
        fourth.log.assert_recomputed("", &["b", "sum", "tens-b"]);
        assert_eq!(*fourth.value("sum").unwrap(), 40);
    }

    #[test]
    fn cached_values_load_from_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let world: World = Arc::new(RwLock::new(HashMap::from([
            ("a".to_string(), 7),
            ("b".to_string(), 40),
        ])));
        {
            let engine = Engine::open(dir.path()).unwrap();
            engine.run(&graph(&world), OnFailure::Stop).unwrap();
        }
        let engine = Engine::open(dir.path()).unwrap();
        let outcome = engine.run(&graph(&world), OnFailure::Stop).unwrap();
        assert!(outcome.log.recomputed().is_empty());
        assert_eq!(engine.load::<Toy>("sum").unwrap(), Some(40));
    }

    /// A node that reads its cell (volatile when `.2`) and fails when it is
    /// negative.
    struct Checked(String, World, bool);

    impl Node for Checked {
        type Value = i64;
        type Error = Error;

        fn id(&self) -> &str {
            &self.0
        }

        fn salt(&self) -> ContentHash {
            ContentHash::of(self.0.as_bytes())
        }

        fn volatile(&self) -> bool {
            self.2
        }

        fn compute(&self, _inputs: &Inputs<'_, Self>) -> Result<Computed<i64>> {
            let v = self.1.read().unwrap().get(&self.0).copied().unwrap_or(0);
            if v < 0 {
                return Err(Error::Cycle {
                    node: self.0.clone(),
                });
            }
            Ok(Computed::new(v, ContentHash::of(&v.to_le_bytes())))
        }
    }

    #[test]
    fn failures_skip_dependents_and_order_edges_do_not_change_keys() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let world: World = Arc::new(RwLock::new(HashMap::from([
            ("bad".to_string(), -1),
            ("ok".to_string(), 1),
        ])));
        let build = || {
            let mut g = Graph::new();
            for id in ["bad", "ok", "after-bad", "after-ok", "barrier-user"] {
                let volatile = matches!(id, "bad" | "ok");
                g.add(Checked(id.into(), world.clone(), volatile)).unwrap();
            }
            g.depend("after-bad", "bad").unwrap();
            g.depend("after-ok", "ok").unwrap();
            g.order("barrier-user", "ok").unwrap();
            g
        };
        let outcome = engine.run(&build(), OnFailure::Continue).unwrap();
        assert_eq!(outcome.log.status("bad"), Some(Status::Failed));
        assert_eq!(outcome.log.status("after-bad"), Some(Status::Skipped));
        assert_eq!(outcome.log.status("after-ok"), Some(Status::Changed));
        assert_eq!(outcome.errors.len(), 1);
        // An order-only predecessor's output is not part of the key.
        world.write().unwrap().insert("ok".into(), 2);
        world.write().unwrap().insert("bad".into(), 0);
        let outcome = engine.run(&build(), OnFailure::Continue).unwrap();
        assert_eq!(outcome.log.status("barrier-user"), Some(Status::Cached));
        // Its input changed, so it ran; its own output did not.
        assert_eq!(outcome.log.status("after-ok"), Some(Status::Unchanged));
        assert_eq!(outcome.log.status("after-bad"), Some(Status::Changed));
    }

    #[test]
    fn stop_skips_what_has_not_started() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let world: World = Arc::new(RwLock::new(HashMap::from([("bad".to_string(), -1)])));
        let mut g = Graph::new();
        g.add(Checked("bad".into(), world.clone(), true)).unwrap();
        g.add(Checked("later".into(), world.clone(), false))
            .unwrap();
        g.order("later", "bad").unwrap();
        let outcome = engine.run(&g, OnFailure::Stop).unwrap();
        assert_eq!(outcome.log.status("later"), Some(Status::Skipped));
        assert_eq!(outcome.log.events.len(), 2);
    }

    #[test]
    fn a_dry_run_plans_and_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let world: World = Arc::new(RwLock::new(HashMap::from([
            ("a".to_string(), 11),
            ("b".to_string(), 25),
        ])));
        let g = graph(&world);
        engine.run(&g, OnFailure::Stop).unwrap();
        world.write().unwrap().insert("b".into(), 31);
        let dry = RunOptions {
            dry_run: true,
            ..RunOptions::new(OnFailure::Stop)
        };
        for _ in 0..2 {
            let plan = engine.run_with(&g, dry, &|_| {}).unwrap();
            assert_eq!(plan.log.status("tens-b"), Some(Status::Planned));
            assert_eq!(plan.log.status("sum"), Some(Status::Planned));
            assert_eq!(plan.log.status("tens-a"), Some(Status::Cached));
        }
        let real = engine.run(&g, OnFailure::Stop).unwrap();
        real.log.assert_recomputed("", &["b", "sum", "tens-b"]);
    }

    #[test]
    fn cycles_are_reported() {
        let mut g: Graph<Toy> = Graph::new();
        g.add(Toy::Tens("x".into())).unwrap();
        g.add(Toy::Tens("y".into())).unwrap();
        g.depend("x", "y").unwrap();
        g.depend("y", "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        assert!(matches!(
            engine.run(&g, OnFailure::Stop),
            Err(Error::Cycle { .. })
        ));
    }
}

#[cfg(test)]
mod stress {
    use super::*;
    use crate::hash::KeyHasher;
    use crate::node::Computed;
    use std::collections::HashMap;
    use std::sync::RwLock;

    type World = Arc<RwLock<HashMap<String, i64>>>;

    struct N(String, World, bool, Vec<String>);

    impl Node for N {
        type Value = i64;
        type Error = Error;
        fn id(&self) -> &str {
            &self.0
        }
        fn salt(&self) -> ContentHash {
            ContentHash::of(self.0.as_bytes())
        }
        fn volatile(&self) -> bool {
            self.2
        }
        fn persist(&self) -> bool {
            !self.0.starts_with("c")
        }
        fn compute(&self, inputs: &Inputs<'_, Self>) -> Result<Computed<i64>> {
            let mut v = self.1.read().unwrap().get(&self.0).copied().unwrap_or(0);
            for d in &self.3 {
                v += *inputs.dependency(d)?;
            }
            Ok(Computed::new(v, ContentHash::of(&v.to_le_bytes())))
        }
    }

    #[test]
    fn barriers_never_start_a_node_early() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let world: World = Arc::new(RwLock::new(HashMap::new()));
        for round in 0..200 {
            // Roots interleaved with the nodes that wait for them, as the
            // compose graph adds them (a store's scans, then its nodes).
            let mut g = Graph::new();
            for c in 0..12 {
                if c < 8 {
                    g.add(N(format!("s{c}"), world.clone(), true, vec![]))
                        .unwrap();
                }
                let mut deps = if c < 8 {
                    vec![format!("s{c}"), format!("s{}", c / 2)]
                } else {
                    vec![format!("s{}", c % 8), format!("s{}", (c * 3) % 8)]
                };
                deps.dedup();
                g.add(N(format!("c{c}"), world.clone(), false, deps.clone()))
                    .unwrap();
                for d in &deps {
                    g.depend(&format!("c{c}"), d).unwrap();
                }
                g.add(N(
                    format!("o{c}"),
                    world.clone(),
                    false,
                    vec![format!("c{c}")],
                ))
                .unwrap();
                g.depend(&format!("o{c}"), &format!("c{c}")).unwrap();
            }
            for o in 0..12 {
                for c in 0..12 {
                    g.order(&format!("o{o}"), &format!("c{c}")).unwrap();
                }
            }
            world
                .write()
                .unwrap()
                .insert(format!("s{}", round % 8), round);
            let outcome = engine.run(&g, OnFailure::Stop).unwrap();
            let bad: Vec<_> = outcome
                .log
                .events
                .iter()
                .filter(|e| e.status == Status::Skipped)
                .map(|e| e.id.clone())
                .collect();
            assert!(bad.is_empty(), "round {round}: skipped {bad:?}");
        }
    }

    /// A node whose key is also a key outside the graph (a build's action
    /// key) gives it: the engine records that key, and an unchanged one
    /// is cached.
    #[test]
    fn a_node_may_give_its_own_key() {
        struct Keyed(World);
        impl Node for Keyed {
            type Value = i64;
            type Error = Error;
            fn id(&self) -> &str {
                "keyed"
            }
            fn salt(&self) -> ContentHash {
                ContentHash::of(b"keyed")
            }
            fn key(&self, inputs: &[(String, ContentHash)]) -> Option<ContentHash> {
                let mut h = KeyHasher::new("action");
                for (_, output) in inputs {
                    h.hash(output);
                }
                Some(h.finish())
            }
            fn compute(&self, _inputs: &Inputs<'_, Self>) -> Result<Computed<i64>> {
                let v = self.0.read().unwrap().len() as i64;
                Ok(Computed::new(v, ContentHash::of(&v.to_le_bytes())))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let world: World = Arc::new(RwLock::new(HashMap::new()));
        world.write().unwrap().insert("a".into(), 1);
        let graph = || {
            let mut g: Graph<Keyed> = Graph::new();
            g.add(Keyed(world.clone())).unwrap();
            g
        };
        engine.run(&graph(), OnFailure::Stop).unwrap();
        let want = KeyHasher::new("action").finish();
        assert_eq!(engine.recorded_key("keyed").unwrap(), Some(want));
        let outcome = engine.run(&graph(), OnFailure::Stop).unwrap();
        assert_eq!(outcome.log.status("keyed"), Some(Status::Cached));
    }

    /// A node may read only what its key covers: a value it did not
    /// declare as an input is refused, even one the run has computed (an
    /// order-only predecessor included).
    #[test]
    fn a_node_reads_only_its_declared_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let world: World = Arc::new(RwLock::new(HashMap::new()));
        let mut g = Graph::new();
        g.add(N("a".into(), world.clone(), false, vec![])).unwrap();
        g.add(N("b".into(), world.clone(), false, vec![])).unwrap();
        g.add(N(
            "x".into(),
            world.clone(),
            false,
            vec!["a".into(), "b".into()],
        ))
        .unwrap();
        g.depend("x", "a").unwrap();
        g.order("x", "b").unwrap();
        let outcome = engine.run(&g, OnFailure::Continue).unwrap();
        let errors: Vec<String> = outcome.errors.iter().map(|(_, e)| e.to_string()).collect();
        assert_eq!(outcome.log.status("x"), Some(Status::Failed));
        assert!(
            errors[0].contains("node x read b, which is not one of its inputs"),
            "{errors:?}"
        );
        g.depend("x", "b").unwrap();
        let outcome = engine.run(&g, OnFailure::Continue).unwrap();
        assert!(outcome.errors.is_empty());
    }

    /// A folder on "disk" (a cell of the world) made from a source cell,
    /// checked on demand, and a goal made from it that checks itself.
    enum Layered {
        Source(World),
        Folder(World),
        Goal(World),
    }

    impl Node for Layered {
        type Value = i64;
        type Error = Error;

        fn id(&self) -> &str {
            match self {
                Layered::Source(_) => "source",
                Layered::Folder(_) => "folder",
                Layered::Goal(_) => "goal",
            }
        }

        fn salt(&self) -> ContentHash {
            ContentHash::of(self.id().as_bytes())
        }

        fn volatile(&self) -> bool {
            matches!(self, Layered::Source(_))
        }

        fn validates(&self) -> bool {
            !self.volatile()
        }

        fn checked_on_demand(&self) -> bool {
            matches!(self, Layered::Folder(_))
        }

        fn still_valid(&self, prior: &i64) -> Result<bool> {
            Ok(match self {
                Layered::Source(_) => true,
                Layered::Folder(w) => w.read().unwrap()["disk"] == *prior,
                Layered::Goal(w) => w.read().unwrap()["published"] == *prior,
            })
        }

        fn compute(&self, inputs: &Inputs<'_, Self>) -> Result<Computed<i64>> {
            let value = match self {
                Layered::Source(w) => w.read().unwrap()["source"],
                Layered::Folder(w) => {
                    let v = *inputs.dependency("source")?;
                    let mut w = w.write().unwrap();
                    *w.entry("folder runs".into()).or_default() += 1;
                    if w.get("fail") == Some(&1) {
                        return Err(Error::Url {
                            message: "the folder cannot be made".into(),
                        });
                    }
                    w.insert("disk".into(), v);
                    v
                }
                Layered::Goal(w) => {
                    let v = *inputs.dependency("folder")? + 1;
                    w.write().unwrap().insert("published".into(), v);
                    v
                }
            };
            Ok(Computed::new(value, ContentHash::of(&value.to_le_bytes())))
        }
    }

    /// With `on_demand`, a folder whose goal is cached is not looked at; a
    /// goal that computes checks the folder first and repairs it, and the
    /// log says the folder ran. Without it, every folder is checked.
    #[test]
    fn on_demand_checks_wait_for_a_dependent_that_reads() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let world: World = Arc::new(RwLock::new(HashMap::from([("source".to_string(), 5)])));
        let mut g = Graph::new();
        g.add(Layered::Source(world.clone())).unwrap();
        g.add(Layered::Folder(world.clone())).unwrap();
        g.add(Layered::Goal(world.clone())).unwrap();
        g.depend("folder", "source").unwrap();
        g.depend("goal", "folder").unwrap();
        let lazy = RunOptions {
            on_demand: true,
            ..RunOptions::new(OnFailure::Stop)
        };
        engine.run_with(&g, lazy, &|_| {}).unwrap();
        assert_eq!(world.read().unwrap()["published"], 6);

        // The folder is damaged; the goal holds: nothing looks at it.
        world.write().unwrap().insert("disk".into(), 99);
        let outcome = engine.run_with(&g, lazy, &|_| {}).unwrap();
        assert_eq!(outcome.log.status("folder"), Some(Status::Cached));
        assert_eq!(outcome.log.status("goal"), Some(Status::Cached));
        assert_eq!(world.read().unwrap()["disk"], 99);

        // The goal no longer holds: it reads the folder, which is checked,
        // found damaged and made again before the goal uses it.
        world.write().unwrap().insert("published".into(), 0);
        let outcome = engine.run_with(&g, lazy, &|_| {}).unwrap();
        assert_eq!(outcome.log.status("folder"), Some(Status::Unchanged));
        assert_eq!(outcome.log.status("goal"), Some(Status::Unchanged));
        assert_eq!(world.read().unwrap()["disk"], 5);
        assert_eq!(world.read().unwrap()["published"], 6);
        assert!(outcome.errors.is_empty());

        // A folder that fails when a goal reads it fails once, under its
        // own id; the goal fails because of it.
        {
            let mut w = world.write().unwrap();
            w.insert("disk".into(), 98);
            w.insert("published".into(), 0);
            w.insert("fail".into(), 1);
            w.insert("folder runs".into(), 0);
        }
        let outcome = engine.run_with(&g, lazy, &|_| {}).unwrap();
        assert_eq!(outcome.log.status("folder"), Some(Status::Failed));
        assert_eq!(outcome.log.status("goal"), Some(Status::Failed));
        let errors: Vec<(String, String)> = outcome
            .errors
            .iter()
            .map(|(id, e)| (id.clone(), e.to_string()))
            .collect();
        assert_eq!(
            errors,
            [
                (
                    "folder".to_string(),
                    "the folder cannot be made".to_string()
                ),
                ("goal".to_string(), "input folder failed".to_string()),
            ]
        );
        assert_eq!(world.read().unwrap()["folder runs"], 1);
        world.write().unwrap().insert("fail".into(), 0);
        engine.run_with(&g, lazy, &|_| {}).unwrap();

        // Checked eagerly, the damage is repaired though the goal holds.
        world.write().unwrap().insert("disk".into(), 99);
        let outcome = engine.run(&g, OnFailure::Stop).unwrap();
        assert_eq!(outcome.log.status("folder"), Some(Status::Unchanged));
        assert_eq!(outcome.log.status("goal"), Some(Status::Cached));
        assert_eq!(world.read().unwrap()["disk"], 5);
    }
}
