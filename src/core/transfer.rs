//! TODO(skeleton): transfer
