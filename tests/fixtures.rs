//! A buildable monorepo: a middleware and a frontend whose build scripts
//! (plain node) log each run to `builds.log` at the root, can be made to
//! fail or hang, and lay out their output as Next.js standalone does.

use crate::util::Repo;

const MIDDLEWARE_BUILD: &str = r#"
import { appendFileSync, cpSync, existsSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { spawn } from "node:child_process";

const root = resolve("../../..");
appendFileSync(`${root}/builds.log`, `middleware ${process.cwd()}\n`);
if (existsSync("src/fail")) {
  console.log("compiling the middleware");
  console.error("error: src/fail asks this build to fail");
  process.exit(1);
}
if (existsSync("src/slow")) {
  const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 120000)"], { stdio: "ignore" });
  writeFileSync(`${root}/slow.pids`, `${process.pid} ${child.pid}`);
  await new Promise(() => {});
}
rmSync("lib", { recursive: true, force: true });
cpSync("src", "lib", { recursive: true });
// Settings files travel with the output, as bundlers copy them.
for (const name of readdirSync(".").filter((n) => n.startsWith(".env"))) cpSync(name, `lib/${name}`);
"#;

const MIDDLEWARE_SERVER: &str = r#"
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
const config = JSON.parse(readFileSync(new URL("./config.json", import.meta.url), "utf8"));
createServer((req, res) => res.end(JSON.stringify(config))).listen(Number(process.env.PORT));
"#;

const FRONTEND_BUILD: &str = r#"
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";

const root = resolve("../../..");
appendFileSync(`${root}/builds.log`, `frontend ${process.cwd()}\n`);
if (existsSync(`${root}/slow-frontend`)) {
  writeFileSync(`${root}/frontend-started`, "");
  await new Promise((done) => setTimeout(done, Number(readFileSync(`${root}/slow-frontend`, "utf8"))));
}
if (!existsSync("../storefront-middleware/lib/index.mjs")) {
  console.error("the middleware must be built first");
  process.exit(1);
}
rmSync(".next", { recursive: true, force: true });
mkdirSync(".next/standalone/.next/server", { recursive: true });
mkdirSync(".next/static", { recursive: true });
writeFileSync(".next/standalone/.next/server/page.html", readFileSync("components/banner.html"));
writeFileSync(".next/static/app.css", "body {}\n");
// The runtime server.js loads, traced into the standalone output as
// Next.js does: an image without it does not start.
for (const name of ["next", "react"]) {
  mkdirSync(`.next/standalone/node_modules/${name}`, { recursive: true });
  writeFileSync(`.next/standalone/node_modules/${name}/package.json`, JSON.stringify({ name, main: "index.js" }));
}
writeFileSync(".next/standalone/node_modules/react/index.js", "module.exports = {};\n");
writeFileSync(".next/standalone/node_modules/next/index.js", `
const http = require("node:http");
const fs = require("node:fs");
const path = require("node:path");
exports.serve = (dir) => http.createServer((req, res) => {
  if (req.url === "/") return res.end(fs.readFileSync(path.join(dir, ".next/server/page.html")));
  const file = path.join(dir, "public", path.normalize(req.url));
  res.end(fs.existsSync(file) ? fs.readFileSync(file) : "missing");
}).listen(Number(process.env.PORT));
`);
writeFileSync(".next/standalone/server.js", `require("next").serve(__dirname);\n`);
// Next.js copies the app's `.env*` files into its standalone output.
for (const name of readdirSync(".").filter((n) => n.startsWith(".env"))) {
  writeFileSync(`.next/standalone/${name}`, readFileSync(name));
}
"#;

impl Repo {
    /// A monorepo whose apps really build: template `brand` with regions
    /// `r1` and `r2` (same middleware, different banners), and `solo`
    /// (its own middleware config).
    pub fn buildable() -> Repo {
        let repo = Repo::empty();
        repo.write(
            ".gitignore",
            "node_modules/\n.out/\n.strata/\nbuilds.log\nslow.pids\n",
        );
        repo.write(
            "package-lock.json",
            "{\"name\": \"demo\", \"lockfileVersion\": 3, \"packages\": {}}\n",
        );
        repo.write("package.json", "{\"name\": \"demo\", \"private\": true}\n");

        let mw = "apps/storefront-middleware";
        repo.write(&format!("{mw}/package.json"), "{\n  \"name\": \"storefront-middleware\",\n  \"type\": \"module\",\n  \"scripts\": { \"build\": \"node build.mjs\" }\n}\n");
        repo.write(&format!("{mw}/.gitignore"), "lib/\n");
        repo.write(&format!("{mw}/build.mjs"), MIDDLEWARE_BUILD);
        repo.write(&format!("{mw}/src/index.mjs"), MIDDLEWARE_SERVER);
        repo.write(
            &format!("{mw}/src/config.json"),
            "{\"currency\": \"USD\"}\n",
        );

        let fe = "apps/storefront-unified-nextjs";
        repo.write(&format!("{fe}/package.json"), "{\n  \"name\": \"storefront-unified-nextjs\",\n  \"scripts\": { \"build\": \"node build.mjs\" }\n}\n");
        repo.write(&format!("{fe}/.gitignore"), ".next/\n");
        repo.write(&format!("{fe}/build.mjs"), FRONTEND_BUILD);
        repo.write(&format!("{fe}/components/banner.html"), "base banner\n");
        repo.write(&format!("{fe}/public/robots.txt"), "User-agent: *\n");
        repo.write(
            &format!("{fe}/src/app.js"),
            "// source that must not be deployed\n",
        );

        repo.write(
            "apps/playwright/package.json",
            "{\"name\": \"playwright\", \"scripts\": {\"test\": \"true\"}}\n",
        );
        repo.write("apps/playwright/tests/home.test.js", "// e2e\n");

        repo.write(
            "apps/stores/brand/stores/r1/storefront-unified-nextjs/components/banner.html",
            "r1 banner\n",
        );
        repo.write(
            "apps/stores/brand/stores/r2/storefront-unified-nextjs/components/banner.html",
            "r2 banner\n",
        );
        repo.write(
            "apps/stores/solo/storefront-middleware/src/config.json",
            "{\"currency\": \"EUR\"}\n",
        );
        repo.write(
            "apps/stores/solo/storefront-unified-nextjs/components/banner.html",
            "solo banner\n",
        );
        repo.config(&["r1", "r2", "solo"]);
        repo
    }

    /// The build scripts run so far: one line each, `<app> <folder>`.
    pub fn builds(&self) -> Vec<String> {
        std::fs::read_to_string(self.path().join("builds.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Runs `strata store build --json` with extra arguments; (exit code,
    /// report, stderr).
    pub fn build_json(&self, extra: &[&str]) -> (i32, serde_json::Value, String) {
        let mut args = vec!["store", "build", "--json"];
        args.extend_from_slice(extra);
        let out = self.strata(&args);
        let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (
            out.status.code().unwrap_or(-1),
            report,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The `build` (or `deploy`) status of one app in a build report.
pub fn status<'a>(report: &'a serde_json::Value, store: &str, app: &str, field: &str) -> &'a str {
    report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == store)
        .and_then(|s| {
            s["apps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["app"] == app)
        })
        .and_then(|a| a[field].as_str())
        .unwrap_or("")
}
