//! The local launcher: engines as processes of this machine.

use super::controller::start_controller;
use super::{own_exe, LaunchError, Launched, Recipe};
use crate::compile::toolchain::PROBED_ENV;

/// Starts a controller listening on `ip` and `n` engines on this machine. Returns
/// once the controller has written its connection file; the engines register in
/// their own time.
pub async fn start_local(n: usize, ip: &str) -> Result<Launched, LaunchError> {
    let mut launched = start_controller(ip).await?;
    let exe = own_exe()?;
    let file = launched.file.display().to_string();
    let probed = probe_for_engines().await;
    for i in 0..n {
        let log = launched.dir.path().join(format!("engine-{i}.log"));
        let args = vec!["engine".into(), "--file".into(), file.clone()];
        let mut recipe = Recipe::new(format!("engine process {i}"), exe.clone(), args, log);
        recipe.engine_here = true;
        recipe.env.extend(probed.clone());
        launched.add(recipe)?;
    }
    Ok(launched)
}

/// This machine's rustc, probed once for every engine started here from this
/// kernel's directory and environment ([`PROBED_ENV`]).
pub(super) async fn probe_for_engines() -> Option<(String, String)> {
    let t = crate::compile::Toolchain::probe().await.ok()?;
    Some((PROBED_ENV.to_string(), t.handed_down()))
}
