//! One step of a run: a node's key from its inputs' outputs, the check of
//! its record, and its computation, with what a node may read.

use std::sync::{Arc, Mutex, OnceLock};

use petgraph::graph::NodeIndex;

use super::log::Status;
use super::{Engine, Record};
use crate::error::Error;
use crate::graph::Graph;
use crate::hash::{ContentHash, KeyHasher};
use crate::node::{Computed, Node};

/// Each input's id and output, as a key was made of them.
pub(super) type InputOutputs = Vec<(String, ContentHash)>;

pub(super) struct Slot<V> {
    pub(super) output: OnceLock<ContentHash>,
    pub(super) value: OnceLock<Arc<V>>,
    pub(super) failed: OnceLock<()>,
    pub(super) planned: OnceLock<()>,
    /// Cached with its check deferred until a dependent reads it.
    pub(super) deferred: OnceLock<()>,
    /// Held while a deferred check (and computation) runs.
    pub(super) demand: Mutex<()>,
}

/// A node's access to its inputs while it computes.
pub struct Inputs<'a, N: Node> {
    pub(super) run: &'a Running<'a, N>,
    pub(super) index: NodeIndex,
    pub(super) prior: Option<Arc<N::Value>>,
}

impl<N: Node> Inputs<'_, N> {
    /// The value of the dependency `id`: computed in this run, or loaded
    /// from the database, or computed now if neither is possible. Only a
    /// declared input may be read: the node's key covers nothing else.
    pub fn dependency(&self, id: &str) -> Result<Arc<N::Value>, N::Error> {
        let node = || self.run.graph.node(self.index).id().to_string();
        let index = self
            .run
            .graph
            .index(id)
            .ok_or_else(|| Error::MissingDependency {
                node: node(),
                dependency: id.to_string(),
            })?;
        if !self.run.graph.inputs(self.index).contains(&index) {
            return Err(Error::UndeclaredInput {
                node: node(),
                dependency: id.to_string(),
            }
            .into());
        }
        self.run.value(index)
    }

    /// The value recorded by this node's last run, when it had one.
    pub fn prior(&self) -> Option<&N::Value> {
        self.prior.as_deref()
    }
}

pub(super) struct Running<'a, N: Node> {
    pub(super) engine: &'a Engine,
    pub(super) graph: &'a Graph<N>,
    pub(super) slots: Vec<Slot<N::Value>>,
    pub(super) dry_run: bool,
    pub(super) on_demand: bool,
    /// Nodes whose deferred check failed, computed again when a dependent
    /// read them, and what came of it.
    pub(super) late: Mutex<Vec<(String, Status)>>,
    /// The errors of nodes that failed when a dependent read them.
    pub(super) late_errors: Mutex<Vec<(String, N::Error)>>,
}

impl<'a, N: Node> Running<'a, N> {
    pub(super) fn value(&self, index: NodeIndex) -> Result<Arc<N::Value>, N::Error> {
        let slot = &self.slots[index.index()];
        if let Some(v) = slot.value.get() {
            return Ok(v.clone());
        }
        if slot.deferred.get().is_some() {
            return self.demand(index);
        }
        let node = self.graph.node(index);
        if node.persist()
            && let Some(v) = self.engine.load::<N>(node.id())?
        {
            let v = Arc::new(v);
            let _ = slot.value.set(v.clone());
            return Ok(v);
        }
        // Neither computed nor stored: compute it now from its inputs.
        let inputs = Inputs {
            run: self,
            index,
            prior: None,
        };
        let computed = node.compute(&inputs)?;
        let _ = slot.value.set(computed.value.clone());
        Ok(computed.value)
    }

    /// The value of a node cached with its check deferred: checked now, and
    /// computed again (with the recorded value as its prior) when the world
    /// no longer matches it. The dependent's key was made of the recorded
    /// output; a computation that gives another output (a build that is not
    /// reproducible) changes the dependent's key at the next run.
    fn demand(&self, index: NodeIndex) -> Result<Arc<N::Value>, N::Error> {
        let slot = &self.slots[index.index()];
        let _held = slot.demand.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = slot.value.get() {
            return Ok(v.clone());
        }
        let node = self.graph.node(index);
        let failed = || -> N::Error {
            Error::InputFailed {
                node: node.id().to_string(),
            }
            .into()
        };
        // Failed once: not computed again for the next reader.
        if slot.failed.get().is_some() {
            return Err(failed());
        }
        match self.check_or_compute(index) {
            Ok(value) => Ok(value),
            Err(e) => {
                // Reported under the node that failed; its readers fail
                // because of it.
                let _ = slot.failed.set(());
                self.late
                    .lock()
                    .unwrap()
                    .push((node.id().to_string(), Status::Failed));
                self.late_errors
                    .lock()
                    .unwrap()
                    .push((node.id().to_string(), e));
                Err(failed())
            }
        }
    }

    /// [`Running::demand`]'s work: the deferred check, and the computation
    /// when the check fails.
    fn check_or_compute(&self, index: NodeIndex) -> Result<Arc<N::Value>, N::Error> {
        let slot = &self.slots[index.index()];
        let node = self.graph.node(index);
        let prior = self.engine.load::<N>(node.id())?;
        if let Some(value) = &prior
            && node.still_valid(value)?
        {
            let value = Arc::new(prior.expect("checked above"));
            let _ = slot.value.set(value.clone());
            return Ok(value);
        }
        let (key, salt, inputs) = self
            .key(index)
            .expect("a node cached in this run has every input's output");
        let recorded = *slot.output.get().expect("a deferred node has its output");
        let computing = Inputs {
            run: self,
            index,
            prior: prior.map(Arc::new),
        };
        let Computed { value, output } = node.compute(&computing)?;
        self.keep(
            node,
            &value,
            Record {
                key,
                output,
                salt,
                inputs,
            },
        )?;
        let status = if output == recorded {
            Status::Unchanged
        } else {
            Status::Changed
        };
        self.late
            .lock()
            .unwrap()
            .push((node.id().to_string(), status));
        let _ = slot.value.set(value.clone());
        Ok(value)
    }

    /// Records what a computation gave: its value (when the node persists
    /// one) and its record.
    fn keep(&self, node: &N, value: &N::Value, record: Record) -> Result<(), N::Error> {
        if node.persist() {
            self.engine.store::<N>(node.id(), value)?;
        }
        self.engine.set_record(node.id(), record)?;
        Ok(())
    }

    /// The node's key, its salt and its inputs' outputs (`None` while an
    /// input has no output).
    pub(super) fn key(&self, index: NodeIndex) -> Option<(ContentHash, ContentHash, InputOutputs)> {
        let node = self.graph.node(index);
        let salt = node.salt();
        let mut hasher = KeyHasher::new("node");
        hasher.hash(&salt);
        let mut inputs = Vec::new();
        for dep in self.graph.inputs(index) {
            let id = self.graph.node(dep).id();
            let output = *self.slots[dep.index()].output.get()?;
            hasher.str(id);
            hasher.hash(&output);
            inputs.push((id.to_string(), output));
        }
        let key = node.key(&inputs).unwrap_or_else(|| hasher.finish());
        Some((key, salt, inputs))
    }

    pub(super) fn step(&self, index: NodeIndex) -> (Status, Option<String>, Option<N::Error>) {
        let node = self.graph.node(index);
        let slot = &self.slots[index.index()];
        // A planned input would change this node's key; an order-only
        // predecessor (a barrier) would not.
        if let Some(p) = self
            .graph
            .inputs(index)
            .into_iter()
            .find(|p| self.slots[p.index()].planned.get().is_some())
        {
            let _ = slot.planned.set(());
            return (
                Status::Planned,
                Some(format!("{} would run", self.graph.node(p).id())),
                None,
            );
        }
        let blocked = self
            .graph
            .predecessors(index)
            .any(|p| self.slots[p.index()].failed.get().is_some());
        let key = if blocked { None } else { self.key(index) };
        let Some((key, salt, inputs)) = key else {
            let _ = slot.failed.set(());
            return (Status::Skipped, Some("an input failed".into()), None);
        };
        match self.try_step(node, slot, index, key, salt, inputs) {
            Ok((status, reason)) => (status, reason, None),
            Err(e) => {
                let _ = slot.failed.set(());
                (Status::Failed, None, Some(e))
            }
        }
    }

    pub(super) fn try_step(
        &self,
        node: &N,
        slot: &Slot<N::Value>,
        index: NodeIndex,
        key: ContentHash,
        salt: ContentHash,
        inputs: InputOutputs,
    ) -> Result<(Status, Option<String>), N::Error> {
        let record = self.engine.record(node.id())?;
        let mut prior: Option<Arc<N::Value>> = None;
        let reason = match &record {
            _ if node.volatile() => "it reads the file system".to_string(),
            None => "it never ran with this state".to_string(),
            Some(r) if r.key == key => {
                "its recorded outputs changed on disk (or its record is unreadable)".to_string()
            }
            Some(r) if r.salt != salt => "its own settings changed".to_string(),
            Some(r) => {
                let changed = inputs
                    .iter()
                    .find(|(id, out)| !r.inputs.iter().any(|(rid, rout)| rid == id && rout == out))
                    .map(|(id, _)| id.clone())
                    .or_else(|| {
                        r.inputs
                            .iter()
                            .find(|(rid, _)| !inputs.iter().any(|(id, _)| id == rid))
                            .map(|(id, _)| id.clone())
                    });
                match changed {
                    Some(id) => format!("{id} changed"),
                    None => "its inputs changed".to_string(),
                }
            }
        };
        if let Some(record) = &record
            && !node.volatile()
            && record.key == key
        {
            if !node.validates() {
                let _ = slot.output.set(record.output);
                return Ok((Status::Cached, None));
            }
            if self.on_demand && node.checked_on_demand() {
                let _ = slot.output.set(record.output);
                let _ = slot.deferred.set(());
                return Ok((Status::Cached, None));
            }
            if let Some(value) = self.engine.load::<N>(node.id())? {
                if node.still_valid(&value)? {
                    let _ = slot.output.set(record.output);
                    let _ = slot.value.set(Arc::new(value));
                    return Ok((Status::Cached, None));
                }
                prior = Some(Arc::new(value));
            }
        }
        if self.dry_run && !node.volatile() && !node.computes_in_dry_run() {
            let _ = slot.planned.set(());
            return Ok((Status::Planned, Some(reason)));
        }
        if prior.is_none() && node.persist() && record.is_some() && !node.volatile() {
            prior = self.engine.load::<N>(node.id())?.map(Arc::new);
        }
        let computing = Inputs {
            run: self,
            index,
            prior,
        };
        let Computed { value, output } = node.compute(&computing)?;
        let status = match &record {
            Some(r) if r.output == output && node.volatile() => Status::Checked,
            Some(r) if r.output == output => Status::Unchanged,
            _ => Status::Changed,
        };
        // A volatile node that changed may say how, from its recorded value.
        let reason = match (status, node.volatile() && node.persist()) {
            (Status::Changed, true) => self
                .engine
                .load::<N>(node.id())?
                .and_then(|prior| node.describe_change(&prior, &value))
                .unwrap_or(reason),
            _ => reason,
        };
        if status != Status::Checked && !self.dry_run {
            self.keep(
                node,
                &value,
                Record {
                    key,
                    output,
                    salt,
                    inputs,
                },
            )?;
        }
        let _ = slot.output.set(output);
        let _ = slot.value.set(value);
        let reason = (status != Status::Checked).then_some(reason);
        Ok((status, reason))
    }
}
