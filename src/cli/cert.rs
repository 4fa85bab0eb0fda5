//! `ringdb cert`: a cluster CA and node certificates.

use std::path::Path;

use anyhow::{Context, bail};
use ringdb::node::tls::ClusterCa;
use ringdb::ring::NodeId;

/// Makes (or loads) the CA in `dir` and issues a certificate for each node.
pub fn run(dir: &Path, cluster: &str, nodes: &[String]) -> anyhow::Result<()> {
    if nodes.is_empty() {
        bail!("name at least one node id to issue a certificate for");
    }
    let ca = load_or_create_ca(dir, cluster)?;
    for node in nodes {
        let (certificate, key) = issue(&ca, dir, &NodeId::new(node))?;
        out!("{}  {}", certificate.display(), key.display());
    }
    out!(
        "CA certificate (give it to clients): {}",
        dir.join("ca.pem").display()
    );
    Ok(())
}

/// The CA in `dir` (`ca.pem`, `ca.key`), made if it is not there.
pub fn load_or_create_ca(dir: &Path, cluster: &str) -> anyhow::Result<ClusterCa> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    if cert_path.exists() {
        let certificate = std::fs::read_to_string(&cert_path)
            .with_context(|| format!("cannot read {}", cert_path.display()))?;
        let key = std::fs::read_to_string(&key_path)
            .with_context(|| format!("cannot read {}", key_path.display()))?;
        return ClusterCa::from_pem(&certificate, &key).context("cannot load the CA");
    }
    let ca = ClusterCa::generate(cluster)?;
    std::fs::write(&cert_path, ca.certificate_pem())?;
    write_private(&key_path, ca.key_pem())?;
    Ok(ca)
}

/// Issues `node`'s certificate into `dir/<node>.pem` and `dir/<node>.key`.
pub fn issue(
    ca: &ClusterCa,
    dir: &Path,
    node: &NodeId,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let issued = ca.issue(node)?;
    let certificate = dir.join(format!("{node}.pem"));
    let key = dir.join(format!("{node}.key"));
    std::fs::write(&certificate, &issued.certificate_pem)?;
    write_private(&key, &issued.key_pem)?;
    Ok((certificate, key))
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
