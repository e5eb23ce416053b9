//! The workspace model: the base apps, the store tree, and which stores are
//! deployable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ignore_paths::{IgnorePaths, IgnoreRule};
use crate::store_id;

/// The folder of apps, relative to the root.
pub const APPS: &str = "apps";
/// The name of a folder of stores (`apps/stores`, `<store>/stores`).
pub const STORES: &str = "stores";

/// A store of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    /// Its id: the folder's name.
    pub id: String,
    /// Its folder, relative to the root, with `/` separators.
    pub dir: String,
    /// The id of its parent store.
    pub parent: Option<String>,
    /// Listed in the config (deployable) or not (template).
    pub deployable: bool,
}

/// Who a layer of a composition belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// A base app.
    Base,
    /// A store (its id).
    Store(String),
}

/// One layer of a (store, app) composition: a folder whose files override
/// the layers before it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Layer {
    /// The folder, relative to the root, with `/` separators.
    pub dir: String,
    /// Whose layer it is.
    pub owner: Owner,
}

/// A multistore monorepo, loaded and checked.
#[derive(Clone, Debug)]
pub struct Workspace {
    root: PathBuf,
    /// The parsed `alokai.config.json`.
    pub config: Config,
    /// The base apps' names, sorted.
    pub base_apps: Vec<String>,
    stores: Vec<Store>,
    by_id: HashMap<String, usize>,
}

impl Workspace {
    /// Loads the monorepo at `root` and checks its shape.
    pub fn load(root: &Path) -> Result<Workspace> {
        let config = Config::load(root)?;
        Self::with_config(root, config)
    }

    /// Builds the model from a config already read.
    pub fn with_config(root: &Path, config: Config) -> Result<Workspace> {
        Self::from_folders(root, config, &FileSystem(root))
    }

    /// Builds the model from a config and a view of the folders (the file
    /// system, or a git commit's tree).
    pub fn from_folders(root: &Path, config: Config, folders: &dyn Folders) -> Result<Workspace> {
        let Some(apps) = folders.subfolders(APPS)? else {
            return Err(Error::NoApps {
                root: root.to_path_buf(),
            });
        };
        let mut base_apps: Vec<String> = apps.into_iter().filter(|name| name != STORES).collect();
        base_apps.sort();

        let mut stores = Vec::new();
        discover(folders, &format!("{APPS}/{STORES}"), None, &mut stores)?;
        stores.sort_by(|a: &Store, b| a.dir.cmp(&b.dir));
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for (i, store) in stores.iter().enumerate() {
            if let Some(&j) = by_id.get(&store.id) {
                return Err(Error::DuplicateStore {
                    id: store.id.clone(),
                    first: PathBuf::from(&stores[j].dir),
                    second: PathBuf::from(&store.dir),
                });
            }
            by_id.insert(store.id.clone(), i);
        }
        for id in config.stores.keys() {
            if let Some(reason) = store_id::invalid_reason(id) {
                return Err(Error::InvalidStoreId {
                    id: id.clone(),
                    place: config.path.clone(),
                    reason,
                });
            }
            let Some(&i) = by_id.get(id) else {
                let mut looked = vec![PathBuf::from(format!("{APPS}/{STORES}/{id}"))];
                looked.extend(
                    stores
                        .iter()
                        .map(|s| PathBuf::from(format!("{}/{STORES}/{id}", s.dir))),
                );
                return Err(Error::StoreNotFound {
                    id: id.clone(),
                    config: config.path.clone(),
                    looked,
                });
            };
            stores[i].deployable = true;
        }
        Ok(Workspace {
            root: root.to_path_buf(),
            config,
            base_apps,
            stores,
            by_id,
        })
    }

    /// The monorepo's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every store of the tree, sorted by folder.
    pub fn stores(&self) -> &[Store] {
        &self.stores
    }

    /// The store with this id.
    pub fn store(&self, id: &str) -> Option<&Store> {
        self.by_id.get(id).map(|&i| &self.stores[i])
    }

    /// The deployable stores, in the config's order.
    pub fn deployable(&self) -> Vec<&Store> {
        self.config
            .stores
            .keys()
            .filter_map(|id| self.store(id))
            .collect()
    }

    /// The store and its ancestors, from the farthest ancestor to the store.
    pub fn lineage(&self, id: &str) -> Vec<&Store> {
        let mut chain = Vec::new();
        let mut next = self.store(id);
        while let Some(store) = next {
            chain.push(store);
            next = store.parent.as_deref().and_then(|p| self.store(p));
        }
        chain.reverse();
        chain
    }

    /// The layers of the composition of `app` for store `id`, from the base
    /// app to the store's own folder: later layers win.
    pub fn layers(&self, id: &str, app: &str) -> Vec<Layer> {
        let mut layers = vec![Layer {
            dir: format!("{APPS}/{app}"),
            owner: Owner::Base,
        }];
        layers.extend(self.lineage(id).into_iter().map(|s| Layer {
            dir: format!("{}/{app}", s.dir),
            owner: Owner::Store(s.id.clone()),
        }));
        layers
    }

    /// The `ignorePaths` that apply to store `id`: those of its deployable
    /// ancestors (farthest first), then its own.
    pub fn ignore_paths(&self, id: &str) -> Result<IgnorePaths> {
        let rules: Vec<IgnoreRule> = self
            .lineage(id)
            .iter()
            .filter_map(|s| self.config.stores.get(&s.id).map(|c| (&s.id, c)))
            .flat_map(|(store, c)| {
                c.ignore_paths.iter().map(|p| IgnoreRule {
                    store: store.clone(),
                    pattern: p.clone(),
                })
            })
            .collect();
        IgnorePaths::new(rules).map_err(|(i, message)| Error::ConfigShape {
            path: self.config.path.clone(),
            field: format!("ignorePaths of {id} (rule {i})"),
            message,
        })
    }

    /// The deployable stores in the subtree of `id` (itself included).
    pub fn deployable_descendants(&self, id: &str) -> Vec<&Store> {
        self.deployable()
            .into_iter()
            .filter(|s| self.lineage(&s.id).iter().any(|a| a.id == id))
            .collect()
    }

    /// The deployable stores named by `ids`, or all of them when `ids` is
    /// empty. Unknown and template ids are errors that list the choices.
    pub fn select(&self, ids: &[String]) -> Result<Vec<&Store>> {
        if ids.is_empty() {
            return Ok(self.deployable());
        }
        let mut selected: Vec<&Store> = Vec::new();
        for id in ids {
            match self.store(id) {
                Some(s) if s.deployable => {
                    if !selected.iter().any(|x| x.id == s.id) {
                        selected.push(s);
                    }
                }
                Some(s) => {
                    return Err(Error::UnknownStore {
                        message: format!(
                            "store {id:?} ({}) is a template store: it is not listed in {}, so it is never composed on its own; deployable stores: {}",
                            s.dir,
                            self.config.path.display(),
                            self.deployable_ids()
                        ),
                    });
                }
                None => {
                    return Err(Error::UnknownStore {
                        message: format!(
                            "no store {id:?} in this monorepo; deployable stores: {}",
                            self.deployable_ids()
                        ),
                    });
                }
            }
        }
        Ok(selected)
    }

    fn deployable_ids(&self) -> String {
        let ids: Vec<&str> = self.deployable().iter().map(|s| s.id.as_str()).collect();
        if ids.is_empty() {
            "none".into()
        } else {
            ids.join(", ")
        }
    }
}

/// A view of a tree of folders: the file system, or a commit.
pub trait Folders {
    /// The names of the non-hidden subfolders of `dir` (relative to the
    /// root, `/`-separated), sorted; `None` when `dir` is not a folder.
    fn subfolders(&self, dir: &str) -> Result<Option<Vec<String>>>;
}

/// The file system under a root.
pub struct FileSystem<'a>(pub &'a Path);

impl Folders for FileSystem<'_> {
    fn subfolders(&self, dir: &str) -> Result<Option<Vec<String>>> {
        let path = self.0.join(dir);
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&path, e))?;
            let file_type = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if file_type.is_dir() && !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        Ok(Some(names))
    }
}

fn discover(
    folders: &dyn Folders,
    stores_dir: &str,
    parent: Option<&str>,
    out: &mut Vec<Store>,
) -> Result<()> {
    for id in folders.subfolders(stores_dir)?.unwrap_or_default() {
        let dir = format!("{stores_dir}/{id}");
        out.push(Store {
            id: id.clone(),
            dir: dir.clone(),
            parent: parent.map(str::to_string),
            deployable: false,
        });
        discover(folders, &format!("{dir}/{STORES}"), Some(&id), out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dirs: &[&str], config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for d in dirs {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("alokai.config.json"), config).unwrap();
        dir
    }

    #[test]
    fn finds_base_apps_and_nested_stores() {
        let dir = tree(
            &[
                "apps/storefront-middleware",
                "apps/storefront-unified-nextjs",
                "apps/stores/brand/stores/us/stores/ny",
                "apps/stores/other",
            ],
            r#"{"stores": {"ny": {}, "other": {}}}"#,
        );
        let ws = Workspace::load(dir.path()).unwrap();
        assert_eq!(
            ws.base_apps,
            ["storefront-middleware", "storefront-unified-nextjs"]
        );
        let lineage: Vec<_> = ws.lineage("ny").iter().map(|s| s.id.as_str()).collect();
        assert_eq!(lineage, ["brand", "us", "ny"]);
        let layers: Vec<_> = ws.layers("ny", "x").into_iter().map(|l| l.dir).collect();
        assert_eq!(
            layers,
            [
                "apps/x",
                "apps/stores/brand/x",
                "apps/stores/brand/stores/us/x",
                "apps/stores/brand/stores/us/stores/ny/x"
            ]
        );
        assert!(!ws.store("brand").unwrap().deployable);
        assert!(ws.store("ny").unwrap().deployable);
        let desc: Vec<_> = ws
            .deployable_descendants("brand")
            .iter()
            .map(|s| s.id.clone())
            .collect();
        assert_eq!(desc, ["ny"]);
    }

    #[test]
    fn shape_errors() {
        let cases: &[(&[&str], &str, &str)] = &[
            (
                &["apps/stores/a"],
                r#"{"stores": {"b": {}}}"#,
                "apps/stores/b",
            ),
            (
                &["apps/stores/a/stores/x", "apps/stores/b/stores/x"],
                r#"{"stores": {}}"#,
                "apps/stores/a/stores/x and apps/stores/b/stores/x",
            ),
            (
                &["apps/stores/Big"],
                r#"{"stores": {"Big": {}}}"#,
                "uppercase",
            ),
        ];
        for (dirs, config, needle) in cases {
            let dir = tree(dirs, config);
            let err = Workspace::load(dir.path()).unwrap_err();
            assert!(err.is_bad_input());
            assert!(
                err.to_string().contains(needle),
                "{err} should mention {needle}"
            );
        }
    }

    #[test]
    fn selection_names_the_choices() {
        let dir = tree(&["apps/stores/t/stores/us"], r#"{"stores": {"us": {}}}"#);
        let ws = Workspace::load(dir.path()).unwrap();
        assert_eq!(ws.select(&[]).unwrap().len(), 1);
        let err = ws.select(&["t".into()]).unwrap_err().to_string();
        assert!(err.contains("template"), "{err}");
        let err = ws.select(&["zz".into()]).unwrap_err().to_string();
        assert!(err.contains("deployable stores: us"), "{err}");
    }
}
