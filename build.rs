//! Records the commit a binary is built from, for `trail --version` and the
//! `server.start` event, so that an operator can tell two builds of one
//! version apart: `TRAIL_COMMIT` when set (a Docker build, which has no
//! `.git`), else `git rev-parse`, else "unknown". Nothing is downloaded.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=TRAIL_COMMIT");
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("TRAIL_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TRAIL_COMMIT={commit}");
}
