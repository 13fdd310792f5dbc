//! The local launcher: engines as processes of this machine.

use super::controller::start_controller;
use super::{own_exe, LaunchError, Launched, Recipe};

/// Starts a controller listening on `ip` and `n` engines on this machine. Returns
/// once the controller has written its connection file; the engines register in
/// their own time.
pub async fn start_local(n: usize, ip: &str) -> Result<Launched, LaunchError> {
    let mut launched = start_controller(ip).await?;
    let exe = own_exe()?;
    let file = launched.file.display().to_string();
    for i in 0..n {
        let log = launched.dir.path().join(format!("engine-{i}.log"));
        let args = vec!["engine".into(), "--file".into(), file.clone()];
        let mut recipe = Recipe::new(format!("engine process {i}"), exe.clone(), args, log);
        recipe.engine_here = true;
        launched.add(recipe)?;
    }
    Ok(launched)
}
