//! The campaign crate's integration tests, one binary, as in every crate of
//! the workspace: each file is a module here.

mod thumbnails;
