//! OCI images: layers, the image layout on disk, image configs and
//! manifests, base images, registries.

pub mod layer;
pub mod layout;
