//! The commands of the `ringdb` binary, one module each.

pub mod admin;
pub mod bench;
pub mod cert;
pub mod data;
pub mod dev;
pub mod lab;
pub mod nodetool;
pub mod repair;
pub mod shell;
pub mod sim;
pub mod start;

/// Input a command cannot use (a malformed option, an unreadable CA, a
/// key over the limit): the command says why and exits with 2, as the
/// README promises, before anything is sent.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// The exit code for a command's error: 2 for bad input, 1 otherwise.
pub fn exit_code(error: &anyhow::Error) -> std::process::ExitCode {
    let bad_input = error.chain().any(|cause| cause.is::<BadInput>());
    std::process::ExitCode::from(if bad_input { data::exit::INVALID } else { 1 })
}

/// An error and its causes, each said once: a layer whose message already
/// quotes the one below it (`cannot read F: No such file`, whose source
/// is `No such file`) does not repeat it.
pub fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}
