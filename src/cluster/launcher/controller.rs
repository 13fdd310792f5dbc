//! Starting a cluster's controller: the private directory for the connection file
//! and the logs, and the controller process, awaited until it has written the file.
//! Every launcher starts here, then adds its engines.

use super::{own_exe, tail, LaunchError, Launched, Recipe};
use std::time::Duration;

/// How long the controller may take to write its connection file.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// Starts a controller listening on `ip`, in a private directory for the
/// connection file and the logs; returns once the file is written.
pub(super) async fn start_controller(ip: &str) -> Result<Launched, LaunchError> {
    let dir = tempfile::Builder::new()
        .prefix("ferrocell-cluster-")
        .tempdir()
        .map_err(LaunchError::Dir)?;
    let file = dir.path().join("cluster.json");
    let log = dir.path().join("controller.log");
    crate::cluster::leftovers::track(dir.path());
    let recipe = Recipe::new(
        "the controller",
        own_exe()?,
        vec![
            "controller".into(),
            "--ip".into(),
            ip.into(),
            "--file".into(),
            file.display().to_string(),
        ],
        log.clone(),
    );
    let mut controller = recipe.spawn()?;
    let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
    while !file.is_file() {
        if let Ok(Some(status)) = controller.try_wait() {
            return Err(LaunchError::ControllerEnded {
                status,
                log: tail(&log, 10),
            });
        }
        if tokio::time::Instant::now() > deadline {
            return Err(LaunchError::NoConnectionFile {
                secs: WRITE_TIMEOUT.as_secs(),
                log: tail(&log, 10),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(Launched {
        dir,
        file,
        controller,
        processes: Default::default(),
        supervisor: None,
    })
}
