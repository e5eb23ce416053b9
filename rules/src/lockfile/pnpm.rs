//! pnpm's `pnpm-lock.yaml` (lockfile versions 5.4, 6 and 9), parsed with
//! `yaml-rust2`: `importers` (one per workspace folder) name the versions
//! they installed; packages are keyed `name@version` (9: dependencies in
//! `snapshots`, resolutions in `packages`), `/name@version` (6) or
//! `/name/version` (5.4). Versions may carry peer suffixes
//! (`1.0.0(react@18.2.0)`), and `link:` points at another workspace.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;

use yaml_rust2::{Yaml, YamlLoader};

use super::{App, Closure, Package, unpinned_protocol};
use strata_engine::ContentHash;

pub(super) fn closures(text: &str, apps: &[App]) -> Result<BTreeMap<String, Closure>, String> {
    let parts = load(text)?;
    let section = |name: &str| -> Vec<&Yaml> {
        parts
            .iter()
            .map(|part| field_of(part, name))
            .filter(|v| !v.is_badvalue())
            .collect()
    };
    let importers = section("importers");
    if importers.is_empty() {
        return Err("it has no importers (a pnpm lockfile of a workspace has them)".into());
    }
    let lock = Lock {
        importers: index(&importers).into_iter().collect(),
        packages: index(&section("packages")),
        snapshots: index(&section("snapshots")),
        patched: index(&section("patchedDependencies")),
        found: RefCell::default(),
        visits: RefCell::default(),
        succ: RefCell::default(),
    };
    let closures = apps
        .iter()
        .map(|app| (app.dir.clone(), lock.closure(app)))
        .collect();
    drop(lock);
    // Freeing a large document's hundred thousand values takes a few
    // milliseconds nobody waits for.
    if text.len() >= PARALLEL_FROM {
        rayon::spawn(move || drop(parts));
    }
    Ok(closures)
}

/// The lockfile's top-level mapping, in one or more parts whose keys are
/// its keys (a key in several parts: its entries are in each). Parsing is
/// most of the time a closure takes, so a large lockfile is parsed in
/// parts at once: see [`load_in_parts`].
fn load(text: &str) -> Result<Vec<Yaml>, String> {
    if text.len() >= PARALLEL_FROM
        && let Some(parts) = load_in_parts(text)
    {
        return Ok(parts);
    }
    let mut docs =
        YamlLoader::load_from_str(text).map_err(|e| format!("it does not parse as YAML: {e}"))?;
    if docs.is_empty() {
        return Err("it is empty".into());
    }
    Ok(vec![docs.swap_remove(0)])
}

/// Below this size, one parse is quicker than parts and threads.
const PARALLEL_FROM: usize = 256 << 10;

/// The document parsed in parts, at once: pnpm writes its lockfile as one
/// block mapping whose top-level keys start at column 0 (`importers:`,
/// `packages:`, `snapshots:`), and whose entries start at column 2. Each
/// part is a run of whole entries under its top-level key, itself a YAML
/// document: a mapping of that one key. `None` (parse it
/// whole) for anything that is not that shape: a document marker, a
/// directive, tabs, an anchor, a part that is not a mapping of one key, a
/// key two parts both hold (a flow collection across a cut fails its
/// part's parse).
fn load_in_parts(text: &str) -> Option<Vec<Yaml>> {
    use rayon::prelude::*;
    // An alias in one part of an anchor in another would not resolve. With
    // no `&` anywhere there is no anchor, and every alias resolves to
    // nothing in a whole parse as in parts.
    if text.contains('&') {
        return None;
    }
    // (top-level key line, its entries' lines) by byte ranges.
    let mut sections: Vec<(usize, usize)> = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        match line.as_bytes().first().copied() {
            // Directives, tabs, explicit keys and values, document markers.
            Some(b'%' | b'\t' | b'?' | b':') => return None,
            Some(b'-' | b'.') if line.starts_with("---") || line.starts_with("...") => return None,
            Some(b' ' | b'#' | b'\n' | b'\r') | None => {}
            Some(_) => sections.push((at, at)),
        }
        at += line.len();
        if let Some(last) = sections.last_mut() {
            last.1 = at;
        }
    }
    if sections.is_empty() {
        return None;
    }
    // Text before the first key may only be comments and blank lines.
    if text[..sections[0].0]
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    {
        return None;
    }
    let threads = rayon::current_num_threads().max(1);
    let target = (text.len() / (threads * 2)).max(64 << 10);
    // Parts: (section, header, body, keys its body starts), each a document
    // `header` + `body`; `keys` is `None` for a whole section.
    let mut parts: Vec<(usize, &str, &str, Option<usize>)> = Vec::new();
    for (n, &(start, end)) in sections.iter().enumerate() {
        let section = &text[start..end];
        let header_end = section.find('\n').map_or(section.len(), |i| i + 1);
        let (header, body) = section.split_at(header_end);
        if body.len() <= target || !header.trim_end().ends_with(':') {
            parts.push((n, section, "", None));
            continue;
        }
        // Cut the body where an entry starts: two spaces, then a key (not
        // the `: value` line of an explicit `? key`, nor a sequence item).
        let mut cut = 0;
        let mut offset = 0;
        let mut keys = 0;
        for line in body.split_inclusive('\n') {
            let third = line
                .strip_prefix("  ")
                .and_then(|rest| rest.bytes().next())
                .filter(|c| !matches!(c, b' ' | b'#' | b'\n' | b'\r'));
            let key = third.is_some_and(|c| !matches!(c, b':' | b'-'));
            if key && offset - cut >= target {
                parts.push((n, header, &body[cut..offset], Some(keys)));
                cut = offset;
                keys = 0;
            }
            keys += usize::from(key);
            offset += line.len();
        }
        parts.push((n, header, &body[cut..], Some(keys)));
    }
    let parsed: Vec<Option<(usize, yaml_rust2::yaml::Hash)>> = parts
        .par_iter()
        .map(|&(n, header, body, keys)| {
            let doc = if body.is_empty() {
                YamlLoader::load_from_str(header)
            } else {
                YamlLoader::load_from_str(&format!("{header}{body}"))
            };
            let Yaml::Hash(h) = doc.ok()?.into_iter().next()? else {
                return None;
            };
            if h.len() != 1 {
                return None;
            }
            // A part of a section holds as many entries as key lines
            // start in it: no entry was split or read otherwise.
            if let Some(keys) = keys {
                match h.values().next()? {
                    Yaml::Hash(entries) if entries.len() == keys => {}
                    _ => return None,
                }
            }
            Some((n, h))
        })
        .collect();
    // A key at the top once, its parts from one section; an entry of a
    // section in one part (a key twice is an error a whole parse reports).
    let mut sections_of: HashMap<Yaml, usize> = HashMap::new();
    let mut entries_seen: HashSet<(usize, &Yaml)> = HashSet::new();
    for part in &parsed {
        let (n, hash) = part.as_ref()?;
        let (key, value) = hash.iter().next()?;
        if *sections_of.entry(key.clone()).or_insert(*n) != *n {
            return None;
        }
        if let Yaml::Hash(entries) = value {
            for k in entries.keys() {
                if !entries_seen.insert((*n, k)) {
                    return None;
                }
            }
        }
    }
    drop(entries_seen);
    Some(
        parsed
            .into_iter()
            .map(|p| Yaml::Hash(p.expect("every part checked").1))
            .collect(),
    )
}

/// A mapping by its string keys, indexed once: a lookup by `Yaml` key
/// allocates a key each time.
fn index<'a>(parts: &[&'a Yaml]) -> HashMap<String, &'a Yaml> {
    parts
        .iter()
        .filter_map(|y| y.as_hash())
        .flat_map(|h| h.iter())
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v)))
        .collect()
}

struct Lock<'a> {
    importers: BTreeMap<String, &'a Yaml>,
    packages: HashMap<String, &'a Yaml>,
    snapshots: HashMap<String, &'a Yaml>,
    patched: HashMap<String, &'a Yaml>,
    found: RefCell<HashMap<String, Option<Rc<Found>>>>,
    visits: RefCell<HashMap<String, Rc<Visit>>>,
    succ: RefCell<HashMap<usize, Rc<Vec<Succ>>>>,
}

/// (name, version as the lockfile writes it, may be absent).
type Want = (String, String, bool);

/// What an importer or a package installed, from its dependency maps.
fn installed(entry: &Yaml, importer: bool) -> Vec<Want> {
    let mut out = Vec::new();
    for (field, optional) in [
        ("dependencies", false),
        ("optionalDependencies", true),
        ("devDependencies", false),
    ] {
        if field == "devDependencies" && !importer {
            continue;
        }
        if let Some(map) = field_of(entry, field).as_hash() {
            for (name, v) in map {
                let Some(name) = name.as_str() else { continue };
                // Importers of 6 and 9: {specifier, version}; others: the
                // version itself.
                let version = match v {
                    Yaml::Hash(_) => scalar(field_of(v, "version")),
                    other => scalar(other),
                };
                out.push((name.to_string(), version, optional));
            }
        }
    }
    out
}

/// The value of `key` in the mapping `y` (`BadValue` when there is none):
/// a scan of its few entries, where `y[key]` would allocate a key to hash.
fn field_of<'a>(y: &'a Yaml, key: &str) -> &'a Yaml {
    static NONE: Yaml = Yaml::BadValue;
    y.as_hash()
        .and_then(|h| h.iter().find(|(k, _)| k.as_str() == Some(key)))
        .map_or(&NONE, |(_, v)| v)
}

fn scalar(y: &Yaml) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        _ => String::new(),
    }
}

/// `1.0.0(react@18.2.0)` → `1.0.0`.
fn without_peers(version: &str) -> &str {
    version.split('(').next().unwrap_or(version)
}

/// `@scope/name@1.0.0(peer)` → (`@scope/name`, `1.0.0`).
fn split_key(key: &str) -> Option<(&str, &str)> {
    let key = key.strip_prefix('/').unwrap_or(key);
    let base = without_peers(key);
    let at = base.get(1..)?.find('@').map(|i| i + 1)?;
    Some((&key[..at], &key[at + 1..]))
}

/// What visiting one package gives, computed once for all apps.
struct Visit {
    id: usize,
    package: Package,
    whole: Option<String>,
    patch: Option<(String, ContentHash)>,
    wants: Vec<Want>,
}

/// (key for its dependencies, key for its resolution, name, version).
type Found = (String, String, String, String);

/// A dependency of a package, resolved.
enum Succ {
    Found(Rc<Found>),
    Whole(String),
}

impl Lock<'_> {
    /// What a package's dependencies resolve to, once.
    fn successors(&self, found: &Found, node: &Visit) -> Rc<Vec<Succ>> {
        if let Some(succ) = self.succ.borrow().get(&node.id) {
            return succ.clone();
        }
        let out: Vec<Succ> = node
            .wants
            .iter()
            .filter_map(|want| {
                if want.1.starts_with("link:") {
                    Some(Succ::Whole(format!(
                        "{}, a dependency of {}, links to a folder",
                        want.0, found.0
                    )))
                } else {
                    self.resolve(&found.0, want)
                }
            })
            .collect();
        let out = Rc::new(out);
        self.succ.borrow_mut().insert(node.id, out.clone());
        out
    }

    /// What a dependency of `from` (not a `link:`) resolves to; `None`
    /// for an optional one that is absent.
    fn resolve(&self, from: &str, (name, version, optional): &Want) -> Option<Succ> {
        if let Some(protocol) = unpinned_protocol(version) {
            return Some(Succ::Whole(format!("{name} is a {protocol} dependency")));
        }
        match self.find_once(name, version) {
            Some(f) => Some(Succ::Found(f)),
            None => (!optional).then(|| {
                Succ::Whole(format!(
                    "{name}@{version}, a dependency of {from}, is not in pnpm-lock.yaml"
                ))
            }),
        }
    }

    fn find_once(&self, name: &str, version: &str) -> Option<Rc<Found>> {
        let memo_key = format!("{name}\u{0}{version}");
        if let Some(found) = self.found.borrow().get(&memo_key) {
            return found.clone();
        }
        let found = self.find(name, version).map(Rc::new);
        self.found.borrow_mut().insert(memo_key, found.clone());
        found
    }

    fn visit(&self, found: &Found) -> Rc<Visit> {
        let (key, resolution_key, real, v) = found;
        if let Some(visit) = self.visits.borrow().get(key) {
            return visit.clone();
        }
        let resolution = self
            .packages
            .get(resolution_key)
            .map(|p| field_of(p, "resolution"))
            .unwrap_or(&Yaml::BadValue);
        let pin = [
            field_of(resolution, "integrity"),
            field_of(resolution, "tarball"),
            field_of(resolution, "commit"),
        ]
        .into_iter()
        .map(scalar)
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| key.clone());
        let whole = (!field_of(resolution, "directory").is_badvalue())
            .then(|| format!("{real} is a local directory"));
        let patch = self.patched.get(&format!("{real}@{v}")).map(|patched| {
            let hash = match patched {
                Yaml::Hash(_) => scalar(field_of(patched, "hash")),
                other => scalar(other),
            };
            (format!("{real}@{v}"), ContentHash::of(hash.as_bytes()))
        });
        // Its dependencies: in `snapshots` (9) or beside its resolution.
        let deps_entry = self
            .snapshots
            .get(key)
            .or_else(|| self.packages.get(key))
            .copied()
            .unwrap_or(&Yaml::BadValue);
        let id = self.visits.borrow().len();
        let visit = Rc::new(Visit {
            id,
            package: Package {
                name: real.clone(),
                version: v.clone(),
                pin,
            },
            whole,
            patch,
            wants: installed(deps_entry, false),
        });
        self.visits.borrow_mut().insert(key.clone(), visit.clone());
        visit
    }

    /// The keys of the entry `name` at `version` resolves to: (key for its
    /// dependencies, key for its resolution, name, version).
    fn find(&self, name: &str, version: &str) -> Option<(String, String, String, String)> {
        // pnpm 9's key, the common case: one lookup each.
        let plain = !version.contains('@') && !version.starts_with('/');
        let key = format!("{name}@{version}");
        if plain
            && self.snapshots.contains_key(&key)
            && self.packages.contains_key(without_peers(&key))
        {
            let base = without_peers(&key).to_string();
            return Some((
                key,
                base,
                name.to_string(),
                without_peers(version).to_string(),
            ));
        }
        let mut candidates = vec![
            format!("{name}@{version}"),
            format!("/{name}@{version}"),
            format!("/{name}/{version}"),
        ];
        // An alias or a non-registry package: the version is the key.
        if version.contains('@') || version.starts_with('/') {
            candidates.insert(0, version.trim_start_matches('/').to_string());
            candidates.insert(1, version.to_string());
        }
        for key in candidates {
            let has_snapshot = self.snapshots.contains_key(&key);
            let base = without_peers(&key).to_string();
            let has_package = self.packages.contains_key(&key) || self.packages.contains_key(&base);
            if has_snapshot || has_package {
                let resolution_key = if self.packages.contains_key(&key) {
                    key.clone()
                } else {
                    base
                };
                let (real, v) = split_key(&key)
                    .map(|(n, v)| (n.to_string(), without_peers(v).to_string()))
                    .or_else(|| {
                        key.strip_prefix('/').and_then(|k| {
                            k.rsplit_once('/')
                                .map(|(n, v)| (n.to_string(), v.to_string()))
                        })
                    })
                    .unwrap_or_else(|| (name.to_string(), without_peers(version).to_string()));
                return Some((key, resolution_key, real, v));
            }
        }
        None
    }

    fn closure(&self, app: &App) -> Closure {
        let mut closure = Closure::default();
        let Some(importer) = self.importers.get(&app.dir) else {
            closure.whole = Some(format!("{} is not an importer of pnpm-lock.yaml", app.dir));
            return closure;
        };
        let mut nodes: VecDeque<Rc<Found>> = VecDeque::new();
        let mut queue: VecDeque<(String, Want)> = installed(importer, true)
            .into_iter()
            .map(|w| (app.dir.clone(), w))
            .collect();
        let mut importers_seen = BTreeSet::from([app.dir.clone()]);
        while let Some((from, (name, version, optional))) = queue.pop_front() {
            if let Some(target) = version.strip_prefix("link:") {
                let dir = normalize(&from, target);
                match self.importers.get(&dir) {
                    Some(other) => {
                        if importers_seen.insert(dir.clone()) {
                            queue.extend(
                                installed(other, false)
                                    .into_iter()
                                    .map(|w| (dir.clone(), w)),
                            );
                        }
                    }
                    None => {
                        closure.whole = Some(format!(
                            "{name} links to {target}, outside the lockfile's workspaces"
                        ));
                    }
                }
                continue;
            }
            match self.resolve(&from, &(name, version, optional)) {
                Some(Succ::Found(found)) => nodes.push_back(found),
                Some(Succ::Whole(why)) => closure.whole = Some(why),
                None => {}
            }
        }
        // Then the packages, each one's successors resolved once for all
        // apps.
        let mut seen: HashSet<usize> = HashSet::new();
        while let Some(found) = nodes.pop_front() {
            let node = self.visit(&found);
            if !seen.insert(node.id) {
                continue;
            }
            if let Some(why) = &node.whole {
                closure.whole = Some(why.clone());
            }
            if let Some((name, hash)) = &node.patch {
                closure.patches.insert(name.clone(), *hash);
            }
            closure.packages.insert(node.package.clone());
            for next in self.successors(&found, &node).iter() {
                match next {
                    Succ::Found(f) => nodes.push_back(f.clone()),
                    Succ::Whole(why) => closure.whole = Some(why.clone()),
                }
            }
        }
        closure
    }
}

/// `link:../b` from importer `apps/a` → `apps/b`.
fn normalize(from: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if from == "." || from.is_empty() {
        Vec::new()
    } else {
        from.split('/').collect()
    };
    for seg in target.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_name_and_version() {
        assert_eq!(split_key("express@4.21.1"), Some(("express", "4.21.1")));
        assert_eq!(
            split_key("/@s/n@1.0.0(react@18.2.0)"),
            Some(("@s/n", "1.0.0(react@18.2.0)"))
        );
        assert_eq!(normalize("apps/a", "../b"), "apps/b");
    }

    #[test]
    fn version_9_snapshots_peers_and_links() {
        let text = "lockfileVersion: '9.0'
importers:
  .: {}
  apps/a:
    dependencies:
      x:
        specifier: ^1.0.0
        version: 1.0.0(p@2.0.0)
      b:
        specifier: workspace:*
        version: link:../b
  apps/b:
    dependencies:
      y:
        specifier: ^3.0.0
        version: 3.0.0
packages:
  x@1.0.0:
    resolution: {integrity: sha-x}
  p@2.0.0:
    resolution: {integrity: sha-p}
  y@3.0.0:
    resolution: {integrity: sha-y}
  unused@1.0.0:
    resolution: {integrity: sha-u}
snapshots:
  x@1.0.0(p@2.0.0):
    dependencies:
      p: 2.0.0
  p@2.0.0: {}
  y@3.0.0: {}
  unused@1.0.0: {}
";
        let apps = [App {
            dir: "apps/a".into(),
            manifest: serde_json::json!({}),
        }];
        let c = closures(text, &apps).unwrap();
        let got: Vec<String> = c["apps/a"]
            .packages
            .iter()
            .map(|p| format!("{}@{}={}", p.name, p.version, p.pin))
            .collect();
        assert_eq!(got, ["p@2.0.0=sha-p", "x@1.0.0=sha-x", "y@3.0.0=sha-y"]);
        assert!(c["apps/a"].whole.is_none());
    }

    fn serial(text: &str) -> Yaml {
        YamlLoader::load_from_str(text).unwrap().swap_remove(0)
    }

    /// The parts joined into one mapping, as a whole parse gives it.
    fn joined(parts: Vec<Yaml>) -> Yaml {
        let mut top = yaml_rust2::yaml::Hash::new();
        for part in parts {
            for (k, v) in part.into_hash().unwrap() {
                match (top.get_mut(&k), v) {
                    (Some(Yaml::Hash(into)), Yaml::Hash(more)) => into.extend(more),
                    (_, v) => {
                        top.insert(k, v);
                    }
                }
            }
        }
        Yaml::Hash(top)
    }

    /// Parsed in parts, a lockfile is the document a whole parse gives:
    /// the real pnpm 9 lockfile of the test data, and a large one with
    /// block scalars, comments, quoted and complex keys across the cuts.
    #[test]
    fn parts_parse_as_the_whole() {
        let real = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/lockfiles/pnpm/base/pnpm-lock.yaml"
        ))
        .unwrap();
        assert!(load_in_parts(&real).map(joined) == Some(serial(&real)));

        let mut big = String::from(
            "# written by a test\nlockfileVersion: '9.0'\n\nsettings:\n  autoInstallPeers: true\n\nimporters:\n  .: {}\n\npackages:\n",
        );
        for i in 0..6000 {
            big.push_str(&format!(
                "\n  '@s/p{i}@1.0.{i}':\n    resolution: {{integrity: sha512-{i}}}\n    engines: {{node: '>=18'}}\n"
            ));
            if i % 97 == 0 {
                big.push_str("    # a comment inside\n    description: |\n      line one\n        indented\n      line three\n");
            }
        }
        big.push_str("\nsnapshots:\n");
        for i in 0..6000 {
            big.push_str(&format!(
                "\n  '@s/p{i}@1.0.{i}':\n    dependencies:\n      q: 1.0.{i}\n"
            ));
        }
        assert!(big.len() > PARALLEL_FROM);
        let parts = load_in_parts(&big).expect("a lockfile of pnpm's shape parses in parts");
        assert!(parts.len() > 2, "{} parts", parts.len());
        let parts = joined(parts);
        assert!(parts == serial(&big), "the parts differ from the whole");
        assert_eq!(parts["packages"].as_hash().unwrap().len(), 6000);

        // Not pnpm's shape: parsed whole.
        assert!(load_in_parts("---\na: 1\n").is_none());
        assert!(load_in_parts("- 1\n- 2\n").is_none());
        let aliased = format!("{big}extra: &x {{a: 1}}\nmore: *x\n");
        assert!(load_in_parts(&aliased).is_none());
        assert!(load(&aliased).unwrap() == [serial(&aliased)]);
        let twice = format!("{big}packages:\n  again: 1\n");
        assert!(load_in_parts(&twice).is_none(), "a key twice at the top");
        // An entry twice in one section, in two parts: a whole parse's
        // error, not a merge.
        let entry_twice = big.replace(
            "\nsnapshots:\n",
            "\n  '@s/p1@1.0.1':\n    resolution: {integrity: again}\n\nsnapshots:\n",
        );
        assert!(load_in_parts(&entry_twice).is_none());
        assert!(load(&entry_twice).is_err());
        // Long keys as js-yaml writes them (`? key` then `: value`): never
        // cut between the two lines.
        let mut explicit =
            String::from("lockfileVersion: '9.0'\n\nimporters:\n  .: {}\n\nsnapshots:\n");
        for i in 0..3000 {
            explicit.push_str(&format!(
                "\n  ? 'p{i}@1.0.0({})'\n  : dependencies:\n      q: 1.0.{i}\n",
                "x".repeat(80)
            ));
        }
        assert!(explicit.len() > PARALLEL_FROM);
        let parts = load_in_parts(&explicit).expect("explicit keys parse in parts");
        assert!(parts.len() > 2, "{} parts", parts.len());
        assert!(joined(parts) == serial(&explicit));
        assert!(load_in_parts("a: 1\n...\nimporters: {}\n").is_none());
    }
}
