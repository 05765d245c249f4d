//! The Python bindings: everything here touches Python objects; the rest of the crate does not.

pub mod api;
pub mod encode;
pub mod errors;
pub mod known;
pub mod objects;
pub mod sanitize;
pub mod text;
