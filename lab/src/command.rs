//! Running the system's `ip` and `iptables`, in the host's namespace or a
//! node's.

use std::process::Command;

use crate::LabError;

/// Runs `program args…` and returns what it printed; a failure carries
/// the command line and its error output.
pub fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => missing(program),
            _ => LabError::Io {
                what: format!("cannot run {program}"),
                source: error,
            },
        })?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if text.is_empty() {
            text = output.status.to_string();
        }
        return Err(LabError::Command {
            command: format!("{program} {}", args.join(" ")),
            output: text,
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `ip args…`.
pub fn ip(args: &[&str]) -> Result<String, LabError> {
    run("ip", args)
}

/// Runs `iptables args…` inside `namespace`.
pub fn iptables_in(namespace: &str, args: &[&str]) -> Result<String, LabError> {
    let mut full = vec!["netns", "exec", namespace, "iptables", "-w"];
    full.extend_from_slice(args);
    ip(&full)
}

/// The error for a program that is not installed.
fn missing(program: &str) -> LabError {
    match program {
        "iptables" => LabError::Missing {
            tool: "iptables",
            package: "iptables",
        },
        _ => LabError::Missing {
            tool: "ip",
            package: "iproute2",
        },
    }
}

/// Checks that the lab can work here: root, `ip`, and `iptables` (which
/// runs inside the namespaces, so `ip netns exec` would hide its absence).
pub fn check_tools() -> Result<(), LabError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(LabError::NotRoot);
    }
    for (program, arg) in [("ip", "-V"), ("iptables", "--version")] {
        run(program, &[arg])?;
    }
    Ok(())
}
