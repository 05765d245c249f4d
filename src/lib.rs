//! atomicjson: canonical JSON written atomically under an exclusive inter-process lock.
//!
//! The pure-Rust core (`format`, `read`, `lock`, `atomic_write`, `errors`) works without
//! Python; the `python` feature adds the bindings that maturin builds into `atomicjson._core`.

pub mod atomic_write;
pub mod background_write;
pub mod errors;
pub mod format;
pub mod holder_record;
pub mod lock;
pub mod read;
pub mod shortest;
pub mod stack;
#[cfg(test)]
mod test_dir;

#[cfg(feature = "python")]
mod python;

#[cfg(feature = "python")]
#[pyo3::pymodule]
mod _core {
    #[pymodule_export]
    use crate::python::api::{
        _forget_locks_after_fork, canonical_bytes, cleanup_temp_files, dumps, loads, lock_holders,
        lock_path_for, read_json, sanitize, set_lock_wait_warning, write_bytes, write_json,
        Encoding, FileLock,
    };

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        m.add("MAX_DEPTH", crate::python::encode::MAX_DEPTH)?;
        crate::python::encode::detect_int_layout(m.py())?;
        Ok(())
    }
}
