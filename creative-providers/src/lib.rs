//! Provider backends for `creative`.
#![warn(missing_docs)]
