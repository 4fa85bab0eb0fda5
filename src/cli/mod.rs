//! The commands of the `ringdb` binary, one module each.

pub mod admin;
pub mod bench;
pub mod cert;
pub mod data;
pub mod dev;
pub mod lab;
pub mod repair;
pub mod shell;
pub mod sim;
pub mod start;
