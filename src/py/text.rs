//! Borrowing a Python `str` key as `&str` without copying it.
//!
//! Under the abi3-py39 build pyo3 extracts `&str` by encoding to a new
//! `bytes` object and copying it into a `String`: two allocations on every
//! keyed call (about 40 ns here). `PyUnicode_AsUTF8AndSize` returns the
//! UTF-8 text the `str` object caches (for ASCII, its own storage). It is in
//! the stable ABI only from 3.10, but every CPython 3.x exports it, so it is
//! declared here directly.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::os::raw::c_char;

unsafe extern "C" {
    fn PyUnicode_AsUTF8AndSize(
        unicode: *mut ffi::PyObject,
        size: *mut ffi::Py_ssize_t,
    ) -> *const c_char;
}

/// `obj` as `&str`, or a `TypeError` naming the argument `name`.
#[inline]
pub fn borrow_str<'a>(obj: &'a Bound<'_, PyAny>, name: &str) -> PyResult<&'a str> {
    let Ok(text) = obj.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "{name} must be str, got {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        )));
    };
    let mut size: ffi::Py_ssize_t = 0;
    // SAFETY: `text` is a live `str`; the buffer returned is owned by it and
    // lives as long as it does, which outlives the borrow `'a`.
    let data = unsafe { PyUnicode_AsUTF8AndSize(text.as_ptr(), &mut size) };
    if data.is_null() {
        // Lone surrogates cannot be UTF-8; Python has set the error.
        return Err(PyErr::fetch(obj.py()));
    }
    let len = usize::try_from(size).unwrap_or(0);
    // SAFETY: CPython guarantees `len` bytes of valid UTF-8 at `data`.
    Ok(unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(data.cast(), len)) })
}
