fn main() {
    // The bindings read compact str and int objects inline where their layout is known for the
    // Python version being built for: pyo3's `Py_3_*` / `PyPy` / `GraalPy` cfgs say which.
    #[cfg(feature = "python")]
    pyo3_build_config::use_pyo3_cfgs();
}
