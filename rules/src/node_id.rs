//! The typed key of every node of the graph. Its text (`build/us/web`) is
//! what the engine records and the log shows; code builds ids from, and
//! reads them back into, this enum, never by formatting or matching text.

use std::fmt;
use std::str::FromStr;

use crate::nodes::NodeKind;

/// A node's id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeId {
    /// Scans a layer folder (relative to the root).
    Scan {
        /// The folder.
        dir: String,
    },
    /// Composes an app of a store.
    Compose {
        /// The store.
        store: String,
        /// The app.
        app: String,
    },
    /// Writes `.out/<store>/<app>`.
    Materialize {
        /// The store.
        store: String,
        /// The app.
        app: String,
    },
    /// A setting builds read (`lockfile/yarn.lock`, `env/API_URL`…).
    Setting {
        /// Its name.
        name: String,
    },
    /// Runs (or restores) an app's build.
    Build {
        /// The store.
        store: String,
        /// The app.
        app: String,
    },
    /// Prepares an app's `.deploy`.
    Prepare {
        /// The store.
        store: String,
        /// The app.
        app: String,
    },
    /// Resolves a base image.
    Base {
        /// As configured.
        name: String,
    },
    /// Makes a layer of an app's image.
    Layer {
        /// The store.
        store: String,
        /// The app.
        app: String,
        /// `dependencies` or `app`.
        part: String,
    },
    /// Makes an app's image.
    Image {
        /// The store.
        store: String,
        /// The app.
        app: String,
    },
    /// Publishes an app's image.
    Push {
        /// The store.
        store: String,
        /// The app.
        app: String,
    },
    /// Triggers a store's deployment.
    Trigger {
        /// The store.
        store: String,
    },
    /// Runs a store's tests.
    Test {
        /// The store.
        store: String,
    },
    /// The working tree against HEAD: the tag images get.
    Revision,
}

/// The text of the revision node's id.
const REVISION: &str = "revision/HEAD";

/// Each kind's word in ids, and whether it names (store, app).
const WORDS: &[(NodeKind, &str)] = &[
    (NodeKind::Scan, "scan"),
    (NodeKind::Compose, "compose"),
    (NodeKind::Materialize, "out"),
    (NodeKind::Setting, "setting"),
    (NodeKind::Build, "build"),
    (NodeKind::Prepare, "deploy"),
    (NodeKind::Base, "base"),
    (NodeKind::Layer, "layer"),
    (NodeKind::Image, "image"),
    (NodeKind::Push, "push"),
    (NodeKind::Trigger, "trigger"),
    (NodeKind::Test, "test"),
    (NodeKind::Revision, "revision"),
];

/// The text every id of `kind` starts with (`out/` for materialize
/// nodes): to list the engine's records of one kind. Settings are named
/// for what they are (`lockfile/…`, `env/…`) and share no prefix.
pub fn id_prefix(kind: NodeKind) -> String {
    format!("{}/", word(kind))
}

/// A kind's word in ids.
fn word(kind: NodeKind) -> &'static str {
    WORDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, w)| *w)
        .expect("every kind has a word")
}

impl NodeId {
    /// Its kind.
    pub fn kind(&self) -> NodeKind {
        match self {
            NodeId::Scan { .. } => NodeKind::Scan,
            NodeId::Compose { .. } => NodeKind::Compose,
            NodeId::Materialize { .. } => NodeKind::Materialize,
            NodeId::Setting { .. } => NodeKind::Setting,
            NodeId::Build { .. } => NodeKind::Build,
            NodeId::Prepare { .. } => NodeKind::Prepare,
            NodeId::Base { .. } => NodeKind::Base,
            NodeId::Layer { .. } => NodeKind::Layer,
            NodeId::Image { .. } => NodeKind::Image,
            NodeId::Push { .. } => NodeKind::Push,
            NodeId::Trigger { .. } => NodeKind::Trigger,
            NodeId::Test { .. } => NodeKind::Test,
            NodeId::Revision => NodeKind::Revision,
        }
    }

    /// The store it belongs to, if any.
    pub fn store(&self) -> Option<&str> {
        match self {
            NodeId::Compose { store, .. }
            | NodeId::Materialize { store, .. }
            | NodeId::Build { store, .. }
            | NodeId::Prepare { store, .. }
            | NodeId::Layer { store, .. }
            | NodeId::Image { store, .. }
            | NodeId::Push { store, .. }
            | NodeId::Trigger { store }
            | NodeId::Test { store } => Some(store),
            NodeId::Scan { .. }
            | NodeId::Setting { .. }
            | NodeId::Base { .. }
            | NodeId::Revision => None,
        }
    }

    /// The app it is about, if any.
    pub fn app(&self) -> Option<&str> {
        match self {
            NodeId::Compose { app, .. }
            | NodeId::Materialize { app, .. }
            | NodeId::Build { app, .. }
            | NodeId::Prepare { app, .. }
            | NodeId::Layer { app, .. }
            | NodeId::Image { app, .. }
            | NodeId::Push { app, .. } => Some(app),
            _ => None,
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = word(self.kind());
        match self {
            NodeId::Scan { dir } => write!(f, "{word}/{dir}"),
            // A setting's id is its name: `lockfile/yarn.lock` reads as
            // what changed.
            NodeId::Setting { name } => f.write_str(name),
            NodeId::Revision => f.write_str(REVISION),
            NodeId::Base { name } => write!(f, "{word}/{name}"),
            NodeId::Trigger { store } | NodeId::Test { store } => write!(f, "{word}/{store}"),
            NodeId::Layer { store, app, part } => write!(f, "{word}/{store}/{app}/{part}"),
            NodeId::Compose { store, app }
            | NodeId::Materialize { store, app }
            | NodeId::Build { store, app }
            | NodeId::Prepare { store, app }
            | NodeId::Image { store, app }
            | NodeId::Push { store, app } => write!(f, "{word}/{store}/{app}"),
        }
    }
}

/// Text that is no node id.
#[derive(Debug, PartialEq, Eq)]
pub struct NotANodeId(pub String);

impl FromStr for NodeId {
    type Err = NotANodeId;

    /// Store ids and app names hold no `/`, so `build/us/web` reads back
    /// unambiguously; any other id is a setting's name.
    fn from_str(text: &str) -> Result<NodeId, NotANodeId> {
        let bad = || NotANodeId(text.to_string());
        if text == REVISION {
            return Ok(NodeId::Revision);
        }
        let (word, rest) = text.split_once('/').ok_or_else(bad)?;
        // `<store>/<app>`, made into the variant `make`.
        let pair = |make: fn(String, String) -> NodeId| {
            rest.split_once('/')
                .filter(|(s, a)| !s.is_empty() && !a.is_empty() && !a.contains('/'))
                .map(|(s, a)| make(s.to_string(), a.to_string()))
                .ok_or_else(bad)
        };
        Ok(match word {
            "scan" => NodeId::Scan { dir: rest.into() },
            "base" => NodeId::Base { name: rest.into() },
            "trigger" if !rest.contains('/') => NodeId::Trigger { store: rest.into() },
            "test" if !rest.contains('/') => NodeId::Test { store: rest.into() },
            "compose" => pair(|store, app| NodeId::Compose { store, app })?,
            "out" => pair(|store, app| NodeId::Materialize { store, app })?,
            "build" => pair(|store, app| NodeId::Build { store, app })?,
            "deploy" => pair(|store, app| NodeId::Prepare { store, app })?,
            "layer" => {
                let mut parts = rest.split('/');
                match (parts.next(), parts.next(), parts.next(), parts.next()) {
                    (Some(store), Some(app), Some(part), None)
                        if !store.is_empty() && !app.is_empty() && !part.is_empty() =>
                    {
                        NodeId::Layer {
                            store: store.into(),
                            app: app.into(),
                            part: part.into(),
                        }
                    }
                    _ => return Err(bad()),
                }
            }
            "image" => pair(|store, app| NodeId::Image { store, app })?,
            "push" => pair(|store, app| NodeId::Push { store, app })?,
            "lockfile" | "env" | "toolchain" | "root" => NodeId::Setting { name: text.into() },
            _ => return Err(bad()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_as_written() {
        let s = |t: &str| t.to_string();
        for id in [
            NodeId::Scan {
                dir: s("apps/stores/us/web"),
            },
            NodeId::Compose {
                store: s("us"),
                app: s("web"),
            },
            NodeId::Materialize {
                store: s("us"),
                app: s("web"),
            },
            NodeId::Setting {
                name: s("lockfile/yarn.lock"),
            },
            NodeId::Setting {
                name: s("env/NEXT_PUBLIC_API"),
            },
            NodeId::Build {
                store: s("us"),
                app: s("web"),
            },
            NodeId::Prepare {
                store: s("us"),
                app: s("web"),
            },
            NodeId::Base {
                name: s("docker.io/library/node:24-alpine"),
            },
            NodeId::Image {
                store: s("us"),
                app: s("web"),
            },
            NodeId::Push {
                store: s("us"),
                app: s("web"),
            },
            NodeId::Layer {
                store: s("us"),
                app: s("web"),
                part: s("dependencies"),
            },
            NodeId::Trigger { store: s("us") },
            NodeId::Test { store: s("us") },
            NodeId::Revision,
        ] {
            let text = id.to_string();
            assert_eq!(text.parse::<NodeId>(), Ok(id.clone()), "{text}");
        }
        assert_eq!(
            NodeId::Build {
                store: s("us"),
                app: s("web")
            }
            .to_string(),
            "build/us/web"
        );
        assert!("build/us".parse::<NodeId>().is_err());
        assert!("nonsense".parse::<NodeId>().is_err());
        assert!("trigger/a/b".parse::<NodeId>().is_err());
    }
}
