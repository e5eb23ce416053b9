//! Integration tests: the strata binary run on monorepos made in temp dirs.

mod changed;
mod changed_props;
mod compose;
mod compose_props;
mod kill;
mod util;
