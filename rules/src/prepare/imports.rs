//! The guard before an image is made: the packages an entry file loads
//! statically (`require("x")`, `import … from "x"`, `import("x")`) must
//! resolve inside `.deploy`, as Node resolves them from `/var/www` where
//! nothing is above. A `.deploy` that only works inside the monorepo (whose
//! own `node_modules/` hides what is missing) never becomes an image.

use std::collections::HashSet;

/// Node's built-in modules (`require('module').builtinModules`, Node 20-24),
/// which need no `node_modules/`.
const BUILTINS: &[&str] = &[
    "assert",
    "async_hooks",
    "buffer",
    "child_process",
    "cluster",
    "console",
    "constants",
    "crypto",
    "dgram",
    "diagnostics_channel",
    "dns",
    "domain",
    "events",
    "fs",
    "http",
    "http2",
    "https",
    "inspector",
    "module",
    "net",
    "os",
    "path",
    "perf_hooks",
    "process",
    "punycode",
    "querystring",
    "readline",
    "repl",
    "stream",
    "string_decoder",
    "sys",
    "timers",
    "tls",
    "trace_events",
    "tty",
    "url",
    "util",
    "v8",
    "vm",
    "wasi",
    "worker_threads",
    "zlib",
];

/// A token of JavaScript, as far as the guard needs: names, string
/// literals (a template with `${` is not a literal) and punctuation.
#[derive(Debug, PartialEq)]
enum Token {
    Name(String),
    Str(String),
    Punct(char),
}

/// Words after which a `/` starts a regular expression, not a division.
const BEFORE_REGEX: &[&str] = &[
    "return",
    "typeof",
    "case",
    "do",
    "else",
    "in",
    "of",
    "new",
    "delete",
    "void",
    "throw",
    "instanceof",
    "yield",
    "await",
];

/// The index after the template literal whose opening backtick is just
/// before `i`, nested templates and strings in `${…}` included; and whether
/// it had a `${…}`.
fn skip_template(chars: &[char], mut i: usize) -> (usize, bool) {
    let mut expr = false;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '`' => return (i + 1, expr),
            '$' if chars.get(i + 1) == Some(&'{') => {
                expr = true;
                i += 2;
                let mut depth = 1;
                while i < chars.len() && depth > 0 {
                    match chars[i] {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        '`' => {
                            i = skip_template(chars, i + 1).0;
                            continue;
                        }
                        q @ ('\'' | '"') => {
                            i += 1;
                            while i < chars.len() && chars[i] != q {
                                i += if chars[i] == '\\' { 2 } else { 1 };
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    (i, expr)
}

/// The tokens of `src`, skipping comments and regular expression literals
/// (a `/` after an operator, an opening bracket or a keyword), with the
/// brace depth each token is at.
fn tokens(src: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = src.chars().collect();
    let mut out: Vec<(Token, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '/'
            && match out.last() {
                None => true,
                Some((Token::Punct(p), _)) => !matches!(p, ')' | ']' | '}'),
                Some((Token::Name(n), _)) => BEFORE_REGEX.contains(&n.as_str()),
                Some((Token::Str(_), _)) => false,
            }
        {
            // A regular expression: to its closing `/`, outside a class.
            i += 1;
            let mut class = false;
            while i < chars.len() && chars[i] != '\n' {
                match chars[i] {
                    '\\' => i += 1,
                    '[' => class = true,
                    ']' => class = false,
                    '/' if !class => break,
                    _ => {}
                }
                i += 1;
            }
            i += 1;
            out.push((Token::Punct('/'), depth));
        } else if c == '`' {
            let (end, expr) = skip_template(&chars, i + 1);
            let token = if expr {
                Token::Punct('`')
            } else {
                Token::Str(
                    chars[i + 1..end.saturating_sub(1).max(i + 1)]
                        .iter()
                        .collect(),
                )
            };
            out.push((token, depth));
            i = end;
        } else if c == '\'' || c == '"' {
            let mut text = String::new();
            i += 1;
            while i < chars.len() && chars[i] != c && chars[i] != '\n' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if let Some(&e) = chars.get(i) {
                    text.push(e);
                }
                i += 1;
            }
            i += 1;
            out.push((Token::Str(text), depth));
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push((Token::Name(chars[start..i].iter().collect()), depth));
        } else {
            if c == '}' {
                depth = depth.saturating_sub(1);
            }
            out.push((Token::Punct(c), depth));
            if c == '{' {
                depth += 1;
            }
            i += 1;
        }
    }
    out
}

/// The module specifiers `src` surely loads when it starts: `import … from
/// "x"`, `export … from "x"`, `import "x"`, and `require("x")` or
/// `import("x")` at the top level (outside any block: a load in a function
/// or a `try` may be optional, as bundlers leave `require("bufferutil")`).
/// A name used as a property (`a.require("x")`) is not a load.
pub fn specifiers(src: &str) -> Vec<String> {
    let t = tokens(src);
    let mut out = Vec::new();
    for (i, (token, depth)) in t.iter().enumerate() {
        let Token::Name(name) = token else { continue };
        let after_dot = i > 0 && t[i - 1].0 == Token::Punct('.');
        if after_dot {
            continue;
        }
        let next = |k: usize| t.get(i + k).map(|(tok, _)| tok);
        match (name.as_str(), next(1), next(2), next(3)) {
            (
                "require" | "import",
                Some(Token::Punct('(')),
                Some(Token::Str(s)),
                Some(Token::Punct(')')),
            ) if *depth == 0 => out.push(s.clone()),
            ("from", Some(Token::Str(s)), _, _) => out.push(s.clone()),
            ("import", Some(Token::Str(s)), _, _) => out.push(s.clone()),
            _ => {}
        }
    }
    out
}

/// The package a bare specifier names (`@scope/name/sub` → `@scope/name`);
/// `None` for relative, absolute, URL-like and built-in specifiers.
pub fn package_of(specifier: &str) -> Option<&str> {
    if specifier.is_empty()
        || specifier.starts_with('.')
        || specifier.starts_with('/')
        || specifier.starts_with('#')
        || specifier.contains(':')
    {
        return None;
    }
    let mut parts = specifier.splitn(3, '/');
    let first = parts.next()?;
    let name = if first.starts_with('@') {
        let second = parts.next()?;
        &specifier[..first.len() + 1 + second.len()]
    } else {
        first
    };
    (!BUILTINS.contains(&name)).then_some(name)
}

/// Whether `package` resolves from the folder `from` (relative to `.deploy`,
/// `""` for its root) as Node looks it up: `<dir>/node_modules/<package>`
/// for `from` and each folder above it, up to `.deploy`'s root and no
/// further. `dirs` holds every folder of `.deploy` (and every symlink, which
/// the link check has made to land inside).
pub fn resolves(dirs: &HashSet<String>, from: &str, package: &str) -> bool {
    let mut dir = Some(from);
    while let Some(d) = dir {
        let candidate = if d.is_empty() {
            format!("node_modules/{package}")
        } else {
            format!("{d}/node_modules/{package}")
        };
        if dirs.contains(&candidate) {
            return true;
        }
        dir = match d.rsplit_once('/') {
            Some((parent, _)) => Some(parent),
            None if d.is_empty() => None,
            None => Some(""),
        };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specifiers_are_the_literal_loads() {
        let src = r#"
const path = require('path')
const next = require("next")
import React from "react";
import "./side-effect.js";
export { a } from '@scope/pkg/sub';
export * from "star";
const later = await import(`h3`);
const dynamic = require(name);
const templated = import(`./${x}`);
obj.require("not-a-load");
// require("commented-out")
/* import x from "also-commented" */
const text = "require('inside-a-string')";
const config = {"csp":"script-src 'none'; frame-src 'none';"};
require.resolve("resolved-only");
const escaped = s.replace(/'/g, "&#39;"); const hint = 'Did you mean require("lodash")?';
const nested = `${a ? `b` : "c"} require("in-a-template")`;
try { require("bufferutil"); } catch {}
function lazy() { return require("optional-dep"); }
const ratio = a / b; const again = c / d; require("after-division");
"#;
        assert_eq!(
            specifiers(src),
            [
                "path",
                "next",
                "react",
                "./side-effect.js",
                "@scope/pkg/sub",
                "star",
                "h3",
                "after-division"
            ]
        );
    }

    #[test]
    fn packages_of_specifiers() {
        for (spec, package) in [
            ("next", Some("next")),
            ("next/dist/server/next", Some("next")),
            ("@scope/pkg/sub", Some("@scope/pkg")),
            ("@scope", None),
            ("./lib/index.js", None),
            ("../x", None),
            ("/abs", None),
            ("node:fs", None),
            ("fs", None),
            ("fs/promises", None),
            ("#internal", None),
        ] {
            assert_eq!(package_of(spec), package, "{spec}");
        }
    }

    #[test]
    fn resolution_walks_up_to_the_deploy_root_only() {
        let dirs: HashSet<String> = [
            "node_modules/next",
            ".output/server/node_modules/h3",
            ".output/server",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert!(resolves(&dirs, "", "next"));
        assert!(resolves(&dirs, ".output/server", "h3"));
        assert!(resolves(&dirs, ".output/server", "next"));
        assert!(!resolves(&dirs, "", "h3"));
        assert!(!resolves(&dirs, "", "react"));
    }
}
