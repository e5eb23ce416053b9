//! The log of a run: what happened to each node, and why.

use std::time::Duration;

use serde::Serialize;

/// What happened to a node in a run.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Key unchanged and still valid: not computed.
    Cached,
    /// Volatile, computed, and its output is what it was.
    Checked,
    /// Computed; its output equals the recorded one, so dependents were cut
    /// off.
    Unchanged,
    /// Computed; its output changed (or it had never run).
    Changed,
    /// Computed and failed.
    Failed,
    /// Not run because a dependency failed.
    Skipped,
    /// A dry run: it would be computed (its key changed, its recorded
    /// output no longer holds, or an input would be computed first).
    Planned,
}

impl Status {
    /// Whether the node's computation ran because something changed.
    pub fn recomputed(self) -> bool {
        matches!(self, Status::Unchanged | Status::Changed | Status::Failed)
    }
}

/// One node's part in a run.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// The node id.
    pub id: String,
    /// What happened.
    pub status: Status,
    /// When it started, from the start of the run.
    pub start: Duration,
    /// How long it took.
    pub duration: Duration,
    /// Why it was computed (or planned): which input changed, or that its
    /// recorded output no longer holds.
    pub reason: Option<String>,
}

/// The log of a run: which nodes were computed and which were not. Tests use
/// it to prove incrementality.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunLog {
    /// Every node's event, in the order they finished.
    pub events: Vec<Event>,
}

impl RunLog {
    /// The ids of the nodes that were computed because an input changed (or
    /// whose volatile output changed), sorted.
    pub fn recomputed(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .events
            .iter()
            .filter(|e| e.status.recomputed())
            .map(|e| e.id.as_str())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The recomputed ids that start with `prefix`.
    pub fn recomputed_with_prefix(&self, prefix: &str) -> Vec<&str> {
        self.recomputed()
            .into_iter()
            .filter(|id| id.starts_with(prefix))
            .collect()
    }

    /// What happened to one node.
    pub fn status(&self, id: &str) -> Option<Status> {
        self.events.iter().find(|e| e.id == id).map(|e| e.status)
    }

    /// Panics unless exactly `expected` (in any order) were recomputed among
    /// the nodes whose id starts with `prefix`.
    pub fn assert_recomputed(&self, prefix: &str, expected: &[&str]) {
        let mut want: Vec<&str> = expected.to_vec();
        want.sort_unstable();
        let got = self.recomputed_with_prefix(prefix);
        assert_eq!(got, want, "recomputed nodes under {prefix:?}");
    }
}

/// One event of a Chrome trace (`chrome://tracing`, Perfetto): a node run
/// as a complete event on a lane of its own while it overlaps others.
#[derive(Clone, Debug, Serialize)]
pub struct TraceEvent {
    /// The node id.
    pub name: String,
    /// The node's kind: its id up to the first `/`.
    pub cat: String,
    /// `X`: a complete event.
    pub ph: &'static str,
    /// Start, in microseconds from the run's start.
    pub ts: u64,
    /// Duration, in microseconds.
    pub dur: u64,
    /// Always 1.
    pub pid: u32,
    /// The lane.
    pub tid: u32,
    /// Status and reason.
    pub args: std::collections::BTreeMap<&'static str, String>,
}

impl RunLog {
    /// The run as Chrome trace events, concurrent nodes on separate lanes.
    pub fn trace(&self) -> Vec<TraceEvent> {
        let mut events: Vec<&Event> = self.events.iter().collect();
        events.sort_by_key(|e| e.start);
        let mut lanes: Vec<Duration> = Vec::new();
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let end = e.start + e.duration;
            let lane = match lanes.iter().position(|free| *free <= e.start) {
                Some(l) => l,
                None => {
                    lanes.push(Duration::ZERO);
                    lanes.len() - 1
                }
            };
            lanes[lane] = end;
            let mut args = std::collections::BTreeMap::new();
            args.insert("status", format!("{:?}", e.status).to_lowercase());
            if let Some(r) = &e.reason {
                args.insert("reason", r.clone());
            }
            out.push(TraceEvent {
                name: e.id.clone(),
                cat: e.id.split('/').next().unwrap_or("").to_string(),
                ph: "X",
                ts: e.start.as_micros() as u64,
                dur: e.duration.as_micros().max(1) as u64,
                pid: 1,
                tid: lane as u32 + 1,
                args,
            });
        }
        out
    }
}
