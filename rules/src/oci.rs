//! OCI images: layers, the image layout on disk, image configs and
//! manifests, base images, registries.

pub mod auth;
pub mod base;
pub mod image;
pub mod layer;
pub mod layout;
pub mod push;
pub mod reference;
pub mod registry;
