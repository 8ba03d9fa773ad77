//! TODO(skeleton): integrity
