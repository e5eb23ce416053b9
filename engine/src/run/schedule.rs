//! The scheduler: nodes whose inputs are done wait in a ready queue,
//! those that will compute first; workers take them until none is left.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use petgraph::graph::NodeIndex;

use super::log::{Event, RunLog, Status};
use super::step::Running;
use crate::node::Node;

/// The shared state of a run in progress.
pub(super) struct Schedule<'a, N: Node> {
    pub(super) running: &'a Running<'a, N>,
    /// Per node: predecessors not finished yet.
    pub(super) waiting: Vec<AtomicUsize>,
    pub(super) stop: AtomicBool,
    pub(super) on_failure: OnFailure,
    pub(super) started: Instant,
    pub(super) log: Mutex<RunLog>,
    pub(super) errors: Mutex<Vec<(String, N::Error)>>,
    pub(super) observe: &'a (dyn Fn(&Event) + Sync),
    pub(super) ready: Mutex<Ready>,
    pub(super) wake: std::sync::Condvar,
    pub(super) boosted: Vec<AtomicBool>,
    pub(super) done: Vec<AtomicBool>,
}

/// Nodes whose inputs are all done, waiting for a worker. `hot` ones will
/// compute (their key changed, or they read the world); `cold` ones only
/// check their record; `remote` ones will compute but mostly wait on the
/// network ([`Node::waits_on_network`]). Hot ones go first: the work an
/// edit causes is on the critical path, the checks of everything else and
/// the calls to other machines are not.
#[derive(Default)]
pub(super) struct Ready {
    pub(super) hot: VecDeque<NodeIndex>,
    pub(super) cold: VecDeque<NodeIndex>,
    pub(super) remote: VecDeque<NodeIndex>,
    pub(super) busy: usize,
}

impl<'a, N: Node> Schedule<'a, N> {
    pub(super) fn is_hot(&self, index: NodeIndex) -> bool {
        let node = self.running.graph.node(index);
        if node.volatile() || self.stop.load(Ordering::Acquire) {
            return true;
        }
        match self.running.key(index) {
            None => true,
            Some((key, ..)) => self
                .running
                .engine
                .record(node.id())
                .ok()
                .flatten()
                .is_none_or(|r| r.key != key),
        }
    }

    pub(super) fn push(&self, index: NodeIndex) {
        let hot = self.boosted[index.index()].load(Ordering::Acquire) || self.is_hot(index);
        let mut ready = self.ready.lock().unwrap();
        if hot && self.running.graph.node(index).waits_on_network() {
            ready.remote.push_back(index);
        } else if hot {
            ready.hot.push_back(index);
        } else {
            ready.cold.push_back(index);
        }
        drop(ready);
        self.wake.notify_one();
        if hot {
            // What a computing node's dependents also wait for is urgent
            // too (a frontend's build waits for its middleware's, which
            // waits for a check of its output folder).
            for next in self.running.graph.successors(index) {
                for other in self.running.graph.predecessors(next) {
                    if other != index {
                        self.boost(other);
                    }
                }
            }
        }
    }

    /// Marks a node urgent: moved ahead if it is ready, pushed ahead when it
    /// becomes ready, and so for what it waits for.
    pub(super) fn boost(&self, index: NodeIndex) {
        if self.done[index.index()].load(Ordering::Acquire)
            || self.boosted[index.index()].swap(true, Ordering::AcqRel)
        {
            return;
        }
        {
            let mut ready = self.ready.lock().unwrap();
            if let Some(at) = ready.cold.iter().position(|&i| i == index) {
                ready.cold.remove(at);
                ready.hot.push_back(index);
            }
        }
        for before in self.running.graph.predecessors(index) {
            self.boost(before);
        }
    }

    /// A worker: takes ready nodes until none is left and none is running.
    pub(super) fn work(&self) {
        loop {
            let index = {
                let mut ready = self.ready.lock().unwrap();
                loop {
                    if let Some(i) = ready
                        .hot
                        .pop_front()
                        .or_else(|| ready.cold.pop_front())
                        .or_else(|| ready.remote.pop_front())
                    {
                        ready.busy += 1;
                        break i;
                    }
                    if ready.busy == 0 {
                        self.wake.notify_all();
                        return;
                    }
                    ready = self.wake.wait(ready).unwrap();
                }
            };
            self.visit(index);
            let mut ready = self.ready.lock().unwrap();
            ready.busy -= 1;
            if ready.busy == 0
                && ready.hot.is_empty()
                && ready.cold.is_empty()
                && ready.remote.is_empty()
            {
                self.wake.notify_all();
            }
        }
    }

    pub(super) fn visit(&self, index: NodeIndex) {
        let graph = self.running.graph;
        let start = self.started.elapsed();
        let (status, reason, error) = if self.stop.load(Ordering::Acquire) {
            let _ = self.running.slots[index.index()].failed.set(());
            (
                Status::Skipped,
                Some("the run stopped at a failure".into()),
                None,
            )
        } else {
            self.running.step(index)
        };
        let id = graph.node(index).id().to_string();
        if let Some(e) = error {
            self.errors.lock().unwrap().push((id.clone(), e));
            if self.on_failure == OnFailure::Stop {
                self.stop.store(true, Ordering::Release);
            }
        }
        let event = Event {
            id,
            status,
            start,
            duration: self.started.elapsed() - start,
            reason,
        };
        (self.observe)(&event);
        self.log.lock().unwrap().events.push(event);
        self.done[index.index()].store(true, Ordering::Release);
        for next in graph.successors(index) {
            if self.waiting[next.index()].fetch_sub(1, Ordering::AcqRel) == 1 {
                self.push(next);
            }
        }
    }
}

/// Whether a failure stops the run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OnFailure {
    /// Start nothing new; what runs finishes.
    Stop,
    /// Go on with every node that does not depend on a failed one.
    Continue,
}
