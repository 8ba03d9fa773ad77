//! TODO(skeleton): queue
