//! TODO(skeleton): the local CDN
