//! What a node of the graph is: a computation with a key, a value and an
//! output hash that drives early cutoff.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::hash::ContentHash;
use crate::run::Inputs;

/// A computation in the graph. Its key is the hash of its own parameters
/// ([`Node::salt`]) and of the output hashes of its dependencies: when the key
/// is unchanged since the last run, the node is not computed again. When it
/// is computed and its output hash equals the recorded one, its dependents'
/// keys are unchanged too (early cutoff).
pub trait Node: Send + Sync {
    /// What the node computes. One type per graph (an enum when the graph
    /// mixes kinds of nodes).
    type Value: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The error a computation can fail with.
    type Error: From<crate::Error> + Send;

    /// A stable, unique id, such as `compose/us/storefront-middleware`.
    fn id(&self) -> &str;

    /// The hash of the node's own parameters (everything but its inputs).
    fn salt(&self) -> ContentHash;

    /// The node's key, when it is also a key outside the graph (a build's
    /// action key in a cache shared with other machines): computed from
    /// the node's own parameters and `inputs` (each input's id and output,
    /// sorted by id), and covering all of them. `None` (the default): the
    /// engine's hash of [`Node::salt`] and the inputs.
    fn key(&self, _inputs: &[(String, ContentHash)]) -> Option<ContentHash> {
        None
    }

    /// A volatile node reads the outside world and runs every time; only a
    /// change of its output dirties its dependents.
    fn volatile(&self) -> bool {
        false
    }

    /// Whether the value is stored in the database. A value that is not
    /// stored is computed again on demand when a dependent needs it.
    fn persist(&self) -> bool {
        true
    }

    /// Whether [`Node::still_valid`] must be asked before a cached value is
    /// trusted.
    fn validates(&self) -> bool {
        false
    }

    /// For a volatile node whose output changed: what changed from its
    /// recorded value `prior` to `now`, in words, for the run's log (the
    /// reason its dependents give is then `<id> changed`, and this says how).
    fn describe_change(&self, _prior: &Self::Value, _now: &Self::Value) -> Option<String> {
        None
    }

    /// Whether a dry run computes this node although it is not volatile:
    /// it only reads, and what it finds decides the plan (or refuses it).
    fn computes_in_dry_run(&self) -> bool {
        false
    }

    /// Whether computing this node mostly waits on another machine (a
    /// registry, a server): ready nodes that will compute and are not of
    /// this kind go first, so that the work on the longest path (a build
    /// waiting for its sources) is not queued behind network calls.
    fn waits_on_network(&self) -> bool {
        false
    }

    /// Whether, in a run with [`crate::RunOptions::on_demand`], this node's
    /// recorded value is checked with [`Node::still_valid`] only when a
    /// dependent computes from it (an intermediate folder the run's goals
    /// were made from), rather than whenever its key is unchanged.
    fn checked_on_demand(&self) -> bool {
        false
    }

    /// For a node whose key is unchanged: whether the world still matches
    /// the recorded value (for example, files written earlier were not
    /// changed by someone else). When it does not, the node is computed
    /// again with the recorded value as its prior.
    fn still_valid(&self, _prior: &Self::Value) -> Result<bool, Self::Error> {
        Ok(true)
    }

    /// Computes the value and its output hash.
    fn compute(&self, inputs: &Inputs<'_, Self>) -> Result<Computed<Self::Value>, Self::Error>
    where
        Self: Sized;
}

/// A computed value and the hash that dependents see.
pub struct Computed<V> {
    /// The value.
    pub value: Arc<V>,
    /// The output hash: equal outputs mean dependents need not run.
    pub output: ContentHash,
}

impl<V> Computed<V> {
    /// A value with its output hash.
    pub fn new(value: V, output: ContentHash) -> Self {
        Computed {
            value: Arc::new(value),
            output,
        }
    }
}
