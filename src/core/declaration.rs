//! TODO(skeleton): declaration
