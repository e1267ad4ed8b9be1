//! The `weft` gateway as a library: configuration, services and the inspector.
