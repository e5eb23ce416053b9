//! Integration tests: the strata binary run on monorepos made in temp dirs.

mod compose;
mod compose_props;
mod kill;
mod util;
