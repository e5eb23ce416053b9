//! Integration tests: the strata binary run on monorepos made in temp dirs.

mod build;
mod cache;
mod changed;
mod changed_props;
mod compose;
mod compose_props;
mod crash;
mod deploy;
mod dev;
mod fixtures;
mod hostile;
mod kill;
mod large;
mod local_dev;
mod lock;
mod lockfiles;
mod manage;
mod nextjs;
mod outputs;
mod proxy;
mod reapi;
mod registry;
mod remote;
mod secrets;
mod util;
