// TEMPORARY placeholder until the real module lands.
use crate::errors::Result;
use std::path::{Path, PathBuf};
use std::time::Duration;
pub fn write_atomic(target: &Path, data: &[u8], _durable: bool) -> Result<()> {
    std::fs::write(target, data)
        .map_err(|e| crate::errors::Error::io(crate::errors::Step::WriteTemp, target, e))
}
pub fn cleanup_temp_files(_dir: &Path, _older_than: Duration) -> Result<Vec<PathBuf>> {
    Ok(vec![])
}
