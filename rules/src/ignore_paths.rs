//! `ignorePaths`: files a store drops from what it inherits. Each
//! deployable store's entry in `alokai.config.json` may list gitignore
//! patterns relative to `.out/<store>/` (so they start with the app:
//! `storefront-unified-nextjs/public/legal/*`); `!` re-includes. The rules
//! of the store's deployable ancestors apply first (farthest first), then
//! its own: as in a `.gitignore`, the last pattern that matches decides.

use std::path::{Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use strata_engine::KeyHasher;

/// The folder the patterns are matched under: a name, not a place (paths
/// are `<root>/<app>/<path inside the app>`).
const ROOT: &str = "/out";

/// One pattern, with the store whose entry lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IgnoreRule {
    /// The store whose `ignorePaths` holds it.
    pub store: String,
    /// The pattern as written.
    pub pattern: String,
}

/// A store's `ignorePaths` with its ancestors', ready to match.
#[derive(Clone, Debug, Default)]
pub struct IgnorePaths {
    rules: Vec<IgnoreRule>,
    matcher: Option<Gitignore>,
}

impl IgnorePaths {
    /// The rules, in the order they apply (a store's ancestors' first).
    /// Returns the message of the first pattern that is not valid
    /// gitignore syntax, with its index.
    pub fn new(rules: Vec<IgnoreRule>) -> Result<IgnorePaths, (usize, String)> {
        if rules.is_empty() {
            return Ok(IgnorePaths::default());
        }
        let mut builder = GitignoreBuilder::new(ROOT);
        for (i, rule) in rules.iter().enumerate() {
            builder
                .add_line(Some(PathBuf::from(&rule.store)), &rule.pattern)
                .map_err(|e| (i, e.to_string()))?;
        }
        let matcher = builder.build().map_err(|e| (0, e.to_string()))?;
        Ok(IgnorePaths {
            rules,
            matcher: Some(matcher),
        })
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in the order they apply.
    pub fn rules(&self) -> &[IgnoreRule] {
        &self.rules
    }

    /// The rule that removes `path` (relative to `app`) from the store, or
    /// `None` when it stays (no rule, or a `!` rule re-includes it).
    pub fn removed_by(&self, app: &str, path: &str) -> Option<IgnoreRule> {
        let matcher = self.matcher.as_ref()?;
        let full = Path::new(ROOT).join(app).join(strata_engine::fs_path(path));
        match matcher.matched_path_or_any_parents(&full, false) {
            Match::Ignore(glob) => {
                let store = glob.from().map(|p| p.to_string_lossy().into_owned());
                // The last rule with this text from this store: the one
                // that decided (later rules win).
                self.rules
                    .iter()
                    .rev()
                    .find(|r| {
                        Some(&r.store) == store.as_ref()
                            && r.pattern.trim_end() == glob.original().trim_end()
                    })
                    .cloned()
                    .or_else(|| {
                        Some(IgnoreRule {
                            store: store.unwrap_or_default(),
                            pattern: glob.original().to_string(),
                        })
                    })
            }
            Match::None | Match::Whitelist(_) => None,
        }
    }

    /// Whether `path` (relative to `app`) is removed.
    pub fn removes(&self, app: &str, path: &str) -> bool {
        self.removed_by(app, path).is_some()
    }

    /// Adds the rules to a key: the same rules, the same key material.
    pub fn hash_into(&self, hasher: &mut KeyHasher) {
        hasher.u64(self.rules.len() as u64);
        for rule in &self.rules {
            hasher.str(&rule.store).str(&rule.pattern);
        }
    }
}

impl PartialEq for IgnorePaths {
    fn eq(&self, other: &Self) -> bool {
        self.rules == other.rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[(&str, &str)]) -> IgnorePaths {
        IgnorePaths::new(
            list.iter()
                .map(|(s, p)| IgnoreRule {
                    store: s.to_string(),
                    pattern: p.to_string(),
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn later_rules_win_and_name_their_store() {
        let paths = rules(&[
            ("parent", "web/public/legal/*"),
            ("parent", "*.map"),
            ("child", "!web/public/legal/imprint.html"),
            ("child", "api/docs/"),
        ]);
        let removed = |app, path| paths.removed_by(app, path).map(|r| r.store);
        assert_eq!(
            removed("web", "public/legal/terms.html"),
            Some("parent".into())
        );
        assert_eq!(removed("web", "public/legal/imprint.html"), None);
        assert_eq!(removed("web", "public/legal.html"), None);
        // A pattern without a slash matches at any depth, in every app.
        assert_eq!(removed("api", "lib/x.js.map"), Some("parent".into()));
        // A folder pattern removes everything under it.
        assert_eq!(removed("api", "docs/a/b.md"), Some("child".into()));
        // Patterns start with the app: another app's same path stays.
        assert_eq!(removed("api", "public/legal/terms.html"), None);
        let rule = paths.removed_by("api", "docs/x").unwrap();
        assert_eq!(rule.pattern, "api/docs/");
    }

    #[test]
    fn no_rules_remove_nothing() {
        let none = IgnorePaths::default();
        assert!(none.is_empty());
        assert!(!none.removes("web", "anything"));
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let err = IgnorePaths::new(vec![
            IgnoreRule {
                store: "s".into(),
                pattern: "ok/*".into(),
            },
            IgnoreRule {
                store: "s".into(),
                pattern: "web/[z-a".into(),
            },
        ])
        .unwrap_err();
        assert_eq!(err.0, 1, "{err:?}");
    }
}
