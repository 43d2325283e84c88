//! The deployment files: `docker-compose.yml` validates with Debian's docker-compose, every
//! configuration it (and the systemd units) mounts is accepted by its binary's own parser,
//! and the units start binaries this workspace builds. (No container runs here: this
//! machine has the Docker client and no engine.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Parses `deploy/<bin>.toml` with `<bin>`'s own configuration loader.
fn check_config(bin: &str, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let result = match bin {
        "hss" => {
            // The file leaves the REST token to the environment, as the compose file and
            // the unit pass it; nothing else in this test binary reads the variable.
            std::env::set_var("HSS_REST_TOKEN", "test-token");
            hss::config::Config::parse(&text)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        "pcscf" => pcscf::config::Config::from_toml(&text)
            .map(drop)
            .map_err(|e| e.to_string()),
        "appserver" => appserver::config::Config::from_toml(&text)
            .map(drop)
            .map_err(|e| e.to_string()),
        other => panic!("no configuration parser known for {other}"),
    };
    if let Err(e) = result {
        panic!("{}: {e}", path.display());
    }
}

/// The binaries the units and the compose file start.
const BINARIES: &[&str] = &["hss", "pcscf", "appserver"];

#[test]
fn docker_compose_config_validates() {
    let Some(bin) = testkit::require_bin("docker-compose") else {
        return;
    };
    let out = Command::new(bin)
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .env("HSS_REST_TOKEN", "test-token")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the token the file refuses to start an open provisioning API.
    let out = Command::new(testkit::require_bin("docker-compose").unwrap())
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .env_remove("HSS_REST_TOKEN")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!out.status.success(), "compose accepted a missing token");
}

#[test]
fn every_mounted_config_parses_and_every_unit_starts_a_workspace_binary() {
    let compose = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    for bin in BINARIES {
        let mount = format!("./deploy/{bin}.toml:/etc/imslab/{bin}.toml:ro");
        assert!(compose.contains(&mount), "compose mounts {mount}");
        check_config(bin, &root().join(format!("deploy/{bin}.toml")));

        let unit_path = root().join(format!("deploy/systemd/imslab-{bin}.service"));
        let unit = std::fs::read_to_string(&unit_path).unwrap();
        let exec = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap_or_else(|| panic!("{unit_path:?} has no ExecStart"));
        assert_eq!(
            exec,
            format!("/usr/local/bin/{bin} -c /etc/imslab/{bin}.toml"),
            "{unit_path:?}"
        );
        for key in ["[Unit]", "[Service]", "[Install]", "Restart=on-failure"] {
            assert!(unit.contains(key), "{unit_path:?} lacks {key}");
        }
        // Only the P-CSCF (kernel XFRM) and the AS (NFQUEUE, AF_PACKET) get capabilities.
        let caps = unit.contains("AmbientCapabilities=");
        assert_eq!(caps, *bin != "hss", "{unit_path:?}: capabilities");

        // The Dockerfile has a stage that builds and starts it.
        let docker = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
        assert!(
            docker.contains(&format!("AS {bin}\n")),
            "Dockerfile stage {bin}"
        );
        assert!(
            docker.contains(&format!(
                "ENTRYPOINT [\"{bin}\", \"-c\", \"/etc/imslab/{bin}.toml\"]"
            )),
            "Dockerfile entrypoint {bin}"
        );
    }
}
