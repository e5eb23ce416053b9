//! The command line's arguments (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The version, with the commit the binary was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STRATA_COMMIT"),
    ")"
);

/// strata: incremental builds and deploys for multistore storefront monorepos.
#[derive(Parser, Debug)]
#[command(
    name = "strata",
    version = VERSION,
    about,
    long_about = None,
    after_help = "Examples:\n  strata store build                 compose and build every deployable store\n  strata store deploy -s fashion-us  deploy one store (an OCI layout in .strata/oci without --registry)\n  strata store dev -s fashion-us     watch mode with the dev servers\n  strata completions bash > ~/.local/share/bash-completion/completions/strata"
)]
pub struct Cli {
    /// The monorepo's root (where alokai.config.json is).
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    pub root: PathBuf,

    /// Where strata keeps its state (default: <root>/.strata).
    #[arg(long, global = true, env = "STRATA_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Say more (files written, node timings).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Fail at once (exit code 2) when another strata process is working on
    /// the same repository or state folder, instead of waiting for it.
    #[arg(long, global = true)]
    pub no_wait: bool,

    /// Print only warnings, errors and what was asked for (--json, a plan).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands (parsed once: their sizes do not matter).
#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Work on the stores of the monorepo.
    #[command(
        subcommand,
        after_help = "Examples:\n  strata store build\n  strata store deploy -s fashion-us\n  strata store changed --since origin/main --condensed"
    )]
    Store(StoreCommand),
    /// Check or trim strata's cache (the state folder).
    #[command(
        subcommand,
        after_help = "Examples:\n  strata cache verify\n  strata cache gc --max-size 5GiB"
    )]
    Cache(CacheCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  strata completions bash > ~/.local/share/bash-completion/completions/strata\n  strata completions zsh > \"${fpath[1]}/_strata\"\n  strata completions fish > ~/.config/fish/completions/strata.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `strata cache …`
#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Read back every cached blob and entry, discard what is corrupt or
    /// incomplete (it is made again when next needed); exit code 1 when
    /// something was wrong.
    #[command(after_help = "Example:\n  strata cache verify --json")]
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evict least recently used build outputs until they take at most
    /// SIZE (e.g. 500M, 10G, 2GiB).
    #[command(after_help = "Example:\n  strata cache gc --max-size 5GiB")]
    Gc {
        /// The size to get under.
        #[arg(long, value_name = "SIZE")]
        max_size: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `strata store …`
#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Compose stores into .out/<store-id>/<app>.
    #[command(
        after_help = "Examples:\n  strata store compose\n  strata store compose -s fashion-us,sports --json"
    )]
    Compose(ComposeArgs),
    /// Compose, then build stores (`--compose-only` stops after composing).
    #[command(
        after_help = "Examples:\n  strata store build\n  strata store build -s fashion-us --filter storefront-middleware -j 4"
    )]
    Build(BuildArgs),
    /// Show the store tree: deployable and template stores, and the base apps.
    #[command(after_help = "Example:\n  strata store graph --format mermaid")]
    Graph(GraphArgs),
    /// Explain where a store's files come from and why it is (or is not) recomposed.
    #[command(
        after_help = "Example:\n  strata store explain fashion-us --file storefront-unified-nextjs/components/header.tsx"
    )]
    Explain(ExplainArgs),
    /// List the deployable stores a git range affects, and why.
    #[command(after_help = "Example:\n  strata store changed --since origin/main --condensed")]
    Changed(ChangedArgs),
    /// Compose, build, make images, push them and trigger the deployments.
    #[command(
        after_help = "Examples:\n  strata store deploy --dry-run\n  strata store deploy -s fashion-us --registry registry.example.com/shop"
    )]
    Deploy(DeployArgs),
    /// Watch mode: keep .out exact while you edit, and run the dev servers.
    #[command(after_help = "Example:\n  strata store dev -s fashion-us --filter '!playwright'")]
    Dev(DevArgs),
    /// Create a store: its folder with one folder per app, and (unless a
    /// template) its entry in alokai.config.json with free local ports.
    #[command(
        after_help = "Examples:\n  strata store add --store-id fashion-ca --parent fashion\n  strata store add --store-id outlet --template"
    )]
    Add(AddArgs),
    /// Move stores under another parent (git mv when tracked), and list
    /// the files that now come from another layer.
    #[command(after_help = "Example:\n  strata store move --store-id fashion-eu --parent root")]
    Move(MoveArgs),
    /// Run built stores as production runs them: each app's
    /// .deploy/server.js on the store's localPorts.
    #[command(
        after_help = "Example:\n  strata store build -s fashion-us && strata store start -s fashion-us"
    )]
    Start(StartArgs),
    /// Find dead, orphan and drifted overrides, and package.json
    /// overrides; exit code 1 when something is found.
    #[command(after_help = "Example:\n  strata store lint --json")]
    Lint(LintArgs),
    /// Build stores, start their servers as `store start` does, and run
    /// their test app's `test` script against them.
    #[command(
        after_help = "Examples:\n  strata store test -s fashion-us\n  strata store test --since origin/main -j 2"
    )]
    Test(TestArgs),
    /// Write each store's tsconfig.json for editors (`@/*` resolves through
    /// the store, its ancestors, then the base app); `--check` lists stale
    /// ones and exits 1.
    #[command(after_help = "Examples:\n  strata store tsconfig\n  strata store tsconfig --check")]
    Tsconfig(TsconfigArgs),
}

/// `strata store test`
#[derive(Args, Debug)]
pub struct TestArgs {
    #[command(flatten)]
    pub selection: Selection,

    /// Test the stores a git range affects (those `store changed` names).
    #[arg(long, value_name = "REF", conflicts_with_all = ["stores", "all"])]
    pub since: Option<String>,

    /// The newer side of the --since range.
    #[arg(long, value_name = "REF", default_value = "HEAD", requires = "since")]
    pub to: String,

    /// Stores tested at once (those whose ports clash go one after the other).
    #[arg(short = 'j', long, value_name = "N", default_value_t = 1)]
    pub jobs: usize,

    /// Run the tests even of stores that passed with the same inputs.
    #[arg(long)]
    pub force: bool,

    /// Pass --ui to the test script (Playwright's UI mode), one store at a
    /// time; the run is not cached.
    #[arg(long)]
    pub ui: bool,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `strata store tsconfig`
#[derive(Args, Debug)]
pub struct TsconfigArgs {
    /// Only these stores (any store of the tree, templates too); repeatable, or comma-separated.
    #[arg(
        short = 's',
        long = "store-id",
        value_name = "ID",
        value_delimiter = ','
    )]
    pub store_id: Vec<String>,

    /// Write nothing: list the stale or missing files and exit 1 if there are any (for CI).
    #[arg(long)]
    pub check: bool,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `strata store add`
#[derive(Args, Debug)]
pub struct AddArgs {
    /// The new store's id (lowercase letters and digits, joined by -, . or _).
    #[arg(short = 's', long, value_name = "ID")]
    pub store_id: String,

    /// The store it inherits from, or `root` (the default).
    #[arg(short = 'p', long, value_name = "ID|root")]
    pub parent: Option<String>,

    /// A template store: a folder others inherit from, not deployed (no
    /// config entry).
    #[arg(long)]
    pub template: bool,

    /// The frontend (default: the one frontend base app the repository
    /// has; required when it has both).
    #[arg(long, value_parser = ["nextjs", "nuxt"])]
    pub framework: Option<String>,

    /// The console project (default: the store id).
    #[arg(long, value_name = "NAME")]
    pub console_project_name: Option<String>,

    /// The cloud region.
    #[arg(long, value_name = "REGION")]
    pub cloud_region: Option<String>,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `strata store move`
#[derive(Args, Debug)]
pub struct MoveArgs {
    /// The stores to move; repeat it or give a comma-separated list.
    #[arg(
        short = 's',
        long,
        value_delimiter = ',',
        value_name = "ID",
        required = true
    )]
    pub store_id: Vec<String>,

    /// The new parent store, or `root`.
    #[arg(short = 'p', long, value_name = "ID|root")]
    pub parent: String,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `strata store start`
#[derive(Args, Debug)]
pub struct StartArgs {
    #[command(flatten)]
    pub selection: Selection,
}

/// `strata store lint`
#[derive(Args, Debug)]
pub struct LintArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `strata store dev`
#[derive(Args, Debug)]
pub struct DevArgs {
    #[command(flatten)]
    pub selection: Selection,

    /// Do not compose before watching (.out is already up to date).
    #[arg(long)]
    pub skip_compose: bool,

    /// Only keep .out up to date; start no dev server.
    #[arg(long)]
    pub no_servers: bool,

    /// Start servers of these apps only; `!name` leaves one out.
    #[arg(long, value_delimiter = ',', value_name = "APP")]
    pub filter: Vec<String>,

    /// Write .out/Caddyfile: each store's localDomain proxied to its dev
    /// servers (run it with `caddy run --config .out/Caddyfile`).
    #[arg(long)]
    pub with_local_domains: bool,
}

/// Layer compression.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum CompressionArg {
    /// gzip, in parallel (every runtime reads it).
    Gzip,
    /// zstd.
    Zstd,
}

/// `strata store deploy`
#[derive(Args, Debug)]
pub struct DeployArgs {
    #[command(flatten)]
    pub selection: Selection,

    #[command(flatten)]
    pub ci: CiArgs,

    /// The registry: [http[s]://]host[:port][/prefix]. Default: the config's
    /// "strata.registry", else the local OCI layout in .strata/oci.
    #[arg(
        long,
        visible_alias = "docker-registry-url",
        env = "CLI_DOCKER_REGISTRY_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub registry: Option<String>,

    /// The registry user.
    #[arg(
        long,
        visible_alias = "cloud-username",
        env = "CLI_CLOUD_USERNAME",
        value_name = "USER"
    )]
    pub username: Option<String>,

    /// The registry password (prefer the environment variable).
    #[arg(
        long,
        visible_alias = "cloud-password",
        env = "CLI_CLOUD_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub password: Option<String>,

    /// Plain HTTP to the registry (and to base registries on loopback addresses).
    #[arg(long)]
    pub insecure_registry: bool,

    /// The base image (default: the store's deployment.baseImage, the config's
    /// strata.baseImage, else docker.io/library/node:24-alpine). Also
    /// `scratch` and `oci-layout:PATH[:REF]`.
    #[arg(long, value_name = "REF")]
    pub base_image: Option<String>,

    /// The platform of base images.
    #[arg(long, default_value = "linux/amd64", value_name = "OS/ARCH")]
    pub platform: String,

    /// Resolve base image tags again instead of using the recorded digest.
    #[arg(long)]
    pub pull: bool,

    /// Layer compression.
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: CompressionArg,

    /// Deploy uncommitted changes, tagged <sha>-dirty.
    #[arg(long)]
    pub allow_dirty: bool,

    /// The console's deployment endpoint (default: record .out/<store>/deployment.json).
    #[arg(
        long,
        env = "CLI_CONSOLE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub console_url: Option<String>,

    /// Push and trigger even when the images equal the last deployment's.
    #[arg(long)]
    pub force: bool,

    /// Print the plan (each store's stages: run or cached, and why); change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Build processes at once (default: the number of cores).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `strata store changed`
#[derive(Args, Debug)]
pub struct ChangedArgs {
    /// The older side of the range (the merge base with --to is used).
    #[arg(long, default_value = "HEAD~1", value_name = "REF")]
    pub since: String,

    /// The newer side of the range.
    #[arg(
        long,
        default_value = "HEAD",
        value_name = "REF",
        conflicts_with = "uncommitted"
    )]
    pub to: String,

    /// A glob (relative to the root) whose changes affect every store; repeatable.
    #[arg(long = "global-dependencies", value_name = "GLOB")]
    pub global_dependencies: Vec<String>,

    /// Print only a JSON array of store ids (for a CI matrix).
    #[arg(long, conflicts_with = "json")]
    pub condensed: bool,

    /// Print the full report as JSON.
    #[arg(long)]
    pub json: bool,

    /// Compare --since with the working tree (staged, unstaged and untracked files).
    #[arg(long)]
    pub uncommitted: bool,
}

/// Which stores to work on.
#[derive(Args, Debug)]
pub struct Selection {
    /// A store id; repeat it or give a comma-separated list. Default: all deployable stores.
    #[arg(
        short = 's',
        long = "store-id",
        value_delimiter = ',',
        value_name = "ID"
    )]
    pub stores: Vec<String>,

    /// Every deployable store (the default when no -s is given).
    #[arg(long, conflicts_with = "stores")]
    pub all: bool,
}

/// `strata store compose`
#[derive(Args, Debug)]
pub struct ComposeArgs {
    #[command(flatten)]
    pub selection: Selection,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What CI runs want: a shared cache, sharding, and reports.
#[derive(Args, Debug)]
pub struct CiArgs {
    /// A remote cache shared by machines: http(s):// (Bazel HTTP layout:
    /// /ac/ and /cas/) or grpc(s):// (a REAPI server's action cache and CAS).
    #[arg(
        long,
        env = "STRATA_REMOTE_CACHE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub remote_cache: Option<String>,

    /// Only read from the remote cache.
    #[arg(long)]
    pub remote_cache_read_only: bool,

    /// Run builds as actions on a REAPI executor (grpc://host:port or
    /// grpcs://…): BuildGrid, Buildbarn, BuildBuddy, NativeLink, EngFlow.
    /// Its server is the remote cache too unless --remote-cache names one.
    #[arg(long, env = "STRATA_REMOTE_EXECUTOR", value_name = "URL")]
    pub remote_executor: Option<String>,

    /// Build actions executing at once on the executor (apart from -j,
    /// which counts local build scripts).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub remote_jobs: usize,

    /// A PEM file of certificates to trust for grpcs:// (a private CA),
    /// beside the usual roots.
    #[arg(long, env = "STRATA_REMOTE_CA", value_name = "FILE")]
    pub remote_ca: Option<PathBuf>,

    /// The REAPI instance name on a grpc(s):// remote cache or executor.
    #[arg(
        long,
        env = "STRATA_REMOTE_INSTANCE",
        value_name = "NAME",
        default_value = ""
    )]
    pub remote_instance: String,

    /// A header sent with every REAPI call, as NAME=VALUE (repeatable; e.g.
    /// authorization=Bearer …). Values are never shown.
    #[arg(long, value_name = "NAME=VALUE")]
    pub remote_header: Vec<String>,

    /// Work on part I of N of the selected stores (for a CI matrix).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,

    /// Write a Chrome trace (chrome://tracing, Perfetto) of every node run.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,

    /// Write a JSON summary: per store and stage, run or cached, from which
    /// cache, why, how long, how many bytes.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
}

/// `strata store build`
#[derive(Args, Debug)]
pub struct BuildArgs {
    #[command(flatten)]
    pub selection: Selection,

    #[command(flatten)]
    pub ci: CiArgs,

    /// Only compose (the same as `strata store compose`).
    #[arg(long)]
    pub compose_only: bool,

    /// Build only these apps; `!name` leaves one out. Repeatable, or comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "APP")]
    pub filter: Vec<String>,

    /// Build processes at once (default: the number of cores).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,

    /// Stop at the first failed build.
    #[arg(long)]
    pub fail_fast: bool,

    /// Run each local build in a temporary copy of the monorepo holding
    /// only what a remote build's input root holds, with only its
    /// environment: a build that reads an undeclared input fails, as it
    /// would on --remote-executor.
    #[arg(long, conflicts_with = "remote_executor")]
    pub sandbox: bool,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Output formats of `store graph`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum GraphFormat {
    /// Graphviz dot.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
    /// JSON.
    Json,
}

/// `strata store graph`
#[derive(Args, Debug)]
pub struct GraphArgs {
    /// The output format.
    #[arg(long, value_enum, default_value = "dot")]
    pub format: GraphFormat,

    /// The engine's node graph of a deploy (scan, compose, materialize,
    /// setting, build, prepare, base, layer, image, push, trigger), not the
    /// store tree.
    #[arg(long)]
    pub nodes: bool,

    /// With --nodes: the stores whose nodes to show (repeat, or a
    /// comma-separated list). Default: every deployable store.
    #[arg(
        short = 's',
        long = "store-id",
        value_delimiter = ',',
        value_name = "ID",
        requires = "nodes"
    )]
    pub stores: Vec<String>,
}

/// `strata store explain`
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The store.
    pub id: String,

    /// A file to trace, as <app>/<path> or a path inside the apps.
    #[arg(long, value_name = "PATH", conflicts_with = "deploy")]
    pub file: Option<String>,

    /// What a deploy of the store would do now, stage by stage, and why
    /// (its nodes in the graph, down to the input that changed).
    #[arg(long)]
    pub deploy: bool,

    /// Print the explanation as JSON.
    #[arg(long)]
    pub json: bool,
}
