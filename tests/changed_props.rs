//! Property: over random histories, `store changed` reports exactly the
//! deployable stores whose composed output differs between two commits
//! (the composition is the truth), as the independent oracle computes it.

use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_rules::ChangedOptions;

use crate::util::{FileState, Repo, oracle};

const APPS: &[&str] = &["web", "api"];
const PATHS: &[&str] = &["a.ts", "src/b.ts", "src/c/d.ts", "package.json"];
const STORES: &[(&str, &str)] = &[
    ("brand", "apps/stores/brand"),
    ("us", "apps/stores/brand/stores/us"),
    ("eu", "apps/stores/brand/stores/eu"),
    ("solo", "apps/stores/solo"),
    ("ny", "apps/stores/brand/stores/us/stores/ny"),
];

#[derive(Clone, Debug)]
enum Edit {
    Write {
        layer: Option<usize>,
        app: usize,
        path: usize,
        content: u8,
    },
    Delete {
        layer: Option<usize>,
        app: usize,
        path: usize,
    },
    Rename {
        app: usize,
        from: usize,
        to: usize,
    },
    ToggleNy,
}

fn edit() -> impl Strategy<Value = Edit> {
    let layer = prop::option::weighted(0.6, 0..STORES.len());
    prop_oneof![
        5 => (layer.clone(), 0..APPS.len(), 0..PATHS.len() - 1, 0u8..3)
            .prop_map(|(layer, app, path, content)| Edit::Write { layer, app, path, content }),
        // package.json only in base apps (a store may not override it).
        1 => (0..APPS.len(), 0u8..3)
            .prop_map(|(app, content)| Edit::Write { layer: None, app, path: 3, content }),
        3 => (layer, 0..APPS.len(), 0..PATHS.len() - 1)
            .prop_map(|(layer, app, path)| Edit::Delete { layer, app, path }),
        1 => (0..APPS.len(), 0..PATHS.len() - 1, 0..PATHS.len() - 1)
            .prop_map(|(app, from, to)| Edit::Rename { app, from, to }),
        1 => Just(Edit::ToggleNy),
    ]
}

fn deployable(repo: &Repo) -> Vec<&'static str> {
    let mut ids = vec!["us", "eu", "solo"];
    if repo.path().join(STORES[4].1).exists() {
        ids.push("ny");
    }
    ids
}

fn dir(layer: Option<usize>, app: usize) -> String {
    match layer {
        None => format!("apps/{}", APPS[app]),
        Some(s) => format!("{}/{}", STORES[s].1, APPS[app]),
    }
}

fn apply(repo: &Repo, edit: &Edit) {
    match *edit {
        Edit::Write {
            layer,
            app,
            path,
            content,
        } => {
            if layer == Some(4) && !repo.path().join(STORES[4].1).exists() {
                return;
            }
            let body = if PATHS[path] == "package.json" {
                format!("{{\"name\": \"x\", \"version\": \"1.0.{content}\"}}\n")
            } else {
                format!("v{content}\n")
            };
            repo.write(&format!("{}/{}", dir(layer, app), PATHS[path]), &body);
        }
        Edit::Delete { layer, app, path } => {
            let _ = std::fs::remove_file(repo.path().join(dir(layer, app)).join(PATHS[path]));
        }
        Edit::Rename { app, from, to } => {
            let base = repo.path().join(dir(None, app));
            if from != to && base.join(PATHS[from]).exists() {
                let target = base.join(PATHS[to]);
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::rename(base.join(PATHS[from]), target).unwrap();
            }
        }
        Edit::ToggleNy => {
            let folder = repo.path().join(STORES[4].1);
            if folder.exists() {
                std::fs::remove_dir_all(folder).unwrap();
            } else {
                repo.write(&format!("{}/web/a.ts", STORES[4].1), "ny's own\n");
                // Git keeps no empty folders: this file keeps the store in
                // the tree when edits delete its app files.
                repo.write(&format!("{}/README.md", STORES[4].1), "ny\n");
            }
            repo.config(&deployable(repo));
        }
    }
}

/// The oracle's output, split per store.
fn per_store(
    snapshot: &BTreeMap<String, FileState>,
) -> BTreeMap<String, BTreeMap<String, FileState>> {
    let mut out: BTreeMap<String, BTreeMap<String, FileState>> = BTreeMap::new();
    for (path, state) in snapshot {
        let (store, rest) = path.split_once('/').unwrap();
        out.entry(store.to_string())
            .or_default()
            .insert(rest.to_string(), state.clone());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20, ..ProptestConfig::default() })]

    #[test]
    fn changed_agrees_with_composition(commits in prop::collection::vec(prop::collection::vec(edit(), 1..4), 2..8)) {
        let repo = Repo::empty();
        for app in APPS {
            repo.write(&format!("apps/{app}/package.json"), "{\"name\": \"x\"}\n");
            for path in &PATHS[..3] {
                repo.write(&format!("apps/{app}/{path}"), "base\n");
            }
        }
        for (_, d) in &STORES[..4] {
            repo.write(&format!("{d}/web/own.ts"), "own\n");
        }
        repo.config(&deployable(&repo));
        repo.git_init();
        let mut history = vec![(crate::util::git(repo.path(), &["rev-parse", "HEAD"]), per_store(&oracle(repo.path())), deployable(&repo))];
        for edits in &commits {
            for e in edits {
                apply(&repo, e);
            }
            let id = repo.commit("step");
            history.push((id, per_store(&oracle(repo.path())), deployable(&repo)));
        }
        for i in 0..history.len() {
            for j in i + 1..history.len() {
                let (since, before, _) = &history[i];
                let (to, after, ids) = &history[j];
                let expected: Vec<&str> = ids
                    .iter()
                    .copied()
                    .filter(|id| before.get(*id) != after.get(*id))
                    .collect();
                let report = strata_rules::changed(repo.path(), &ChangedOptions {
                    since: since.clone(),
                    to: to.clone(),
                    uncommitted: false,
                    global_dependencies: Vec::new(),
                }).unwrap();
                prop_assert_eq!(report.ids(), expected, "range {}..{}", i, j);
            }
        }
    }
}
