//! numpy and pandas types the encoder writes itself. The legacy rules turn them into Python
//! objects first (`item()`, `tolist()`, `Timestamp.isoformat()`), which cost more than the
//! rest of the walk on documents full of them; reading their values directly gives the same
//! text. Anything unusual (other dtypes, byte orders, years, nesting at the depth limit) is
//! left to those rules.

use std::sync::Mutex;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyString, PyType};

use super::sanitize::type_module;
use crate::format;

/// What an exact type is to the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// numpy float16, float32, float64: `item()` is a Python float of the same value.
    Float,
    /// numpy integers (not timedelta64): `item()` is a Python int.
    Int,
    /// numpy bool_.
    Bool,
    /// numpy.ndarray (exactly).
    Array,
    /// pandas.Timestamp (exactly).
    Timestamp,
    Other,
}

/// Kinds of the exact types met so far. The types are held so that their addresses are never
/// reused by other types; the list stays short (a document uses a handful of types).
static KINDS: Mutex<Vec<(Py<PyType>, Kind)>> = Mutex::new(Vec::new());
const MAX_KINDS: usize = 256;

/// The kind of `obj`'s exact type.
pub fn kind_of(obj: &Bound<'_, PyAny>) -> PyResult<Kind> {
    // SAFETY: obj is live.
    let ty_ptr = unsafe { ffi::Py_TYPE(obj.as_ptr()) }.cast::<ffi::PyObject>();
    {
        let kinds = KINDS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, kind)) = kinds.iter().find(|(t, _)| t.as_ptr() == ty_ptr) {
            return Ok(*kind);
        }
    }
    let ty = obj.get_type();
    let kind = compute_kind(&ty)?;
    let mut kinds = KINDS.lock().unwrap_or_else(|e| e.into_inner());
    if kinds.len() < MAX_KINDS && !kinds.iter().any(|(t, _)| t.as_ptr() == ty_ptr) {
        kinds.push((ty.unbind(), kind));
    }
    Ok(kind)
}

fn loaded_module<'py>(py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    // Only modules already imported: atomicjson never imports numpy or pandas itself.
    Ok(py.import("sys")?.getattr("modules")?.get_item(name).ok())
}

fn compute_kind(ty: &Bound<'_, PyType>) -> PyResult<Kind> {
    let py = ty.py();
    let module = type_module(ty)?;
    // The legacy rule: numpy values are recognised by their type's module.
    if module.starts_with("numpy") {
        let Some(np) = loaded_module(py, "numpy")? else {
            return Ok(Kind::Other);
        };
        let is =
            |name: &str| -> PyResult<bool> { Ok(np.getattr_opt(name)?.is_some_and(|t| t.is(ty))) };
        if is("ndarray")? {
            return Ok(Kind::Array);
        }
        if is("float16")? || is("float32")? || is("float64")? {
            return Ok(Kind::Float);
        }
        if is("bool_")? {
            return Ok(Kind::Bool);
        }
        // timedelta64 is a numpy integer whose item() is a timedelta (or an int, by unit).
        if is("timedelta64")? {
            return Ok(Kind::Other);
        }
        if let Some(integer) = np.getattr_opt("integer")? {
            if ty.is_subclass(&integer)? {
                return Ok(Kind::Int);
            }
        }
        return Ok(Kind::Other);
    }
    if module.starts_with("pandas") {
        if let Some(pd) = loaded_module(py, "pandas")? {
            if pd.getattr_opt("Timestamp")?.is_some_and(|t| t.is(ty)) {
                return Ok(Kind::Timestamp);
            }
        }
    }
    Ok(Kind::Other)
}

/// The value of a numpy float scalar, as `item()` gives it.
pub fn float_value(obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    // SAFETY: obj is live; float(x) of a numpy float is its value widened to double.
    unsafe {
        // float64 subclasses float and keeps its value where a float does: no new object.
        if ffi::PyFloat_Check(obj.as_ptr()) != 0 {
            return Ok(ffi::PyFloat_AsDouble(obj.as_ptr()));
        }
        let f = Bound::from_owned_ptr_or_err(obj.py(), ffi::PyNumber_Float(obj.as_ptr()))?;
        Ok(ffi::PyFloat_AsDouble(f.as_ptr()))
    }
}

/// The Python int of a numpy integer scalar, as `item()` gives it.
pub fn int_value<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: obj is live.
    unsafe { Bound::from_owned_ptr_or_err(obj.py(), ffi::PyNumber_Index(obj.as_ptr())) }
}

/// The element type of an array the encoder reads itself.
#[derive(Clone, Copy, Debug)]
pub enum Elem {
    F16,
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Bool,
}

impl Elem {
    pub fn size(self) -> usize {
        match self {
            Elem::I8 | Elem::U8 | Elem::Bool => 1,
            Elem::F16 | Elem::I16 | Elem::U16 => 2,
            Elem::F32 | Elem::I32 | Elem::U32 => 4,
            Elem::F64 | Elem::I64 | Elem::U64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Elem::F16 | Elem::F32 | Elem::F64)
    }
}

/// The elements of an array in C order (`tobytes()`), with its shape.
pub struct Array<'py> {
    pub bytes: Bound<'py, PyBytes>,
    pub shape: Vec<usize>,
    pub elem: Elem,
}

/// The data of an ndarray of a plain numeric or bool dtype in native byte order, with at
/// least one dimension; `None` for anything else (0-d arrays, other dtypes), which goes
/// through `tolist()`/`item()`.
pub fn read_array<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Option<Array<'py>>> {
    let py = obj.py();
    let dtype = obj.getattr(intern!(py, "dtype"))?;
    let kind = dtype.getattr(intern!(py, "kind"))?;
    let kind = kind.cast::<PyString>()?.to_cow()?;
    let order = dtype.getattr(intern!(py, "byteorder"))?;
    let order = order.cast::<PyString>()?.to_cow()?;
    let native = match &*order {
        "=" | "|" => true,
        "<" => cfg!(target_endian = "little"),
        ">" => cfg!(target_endian = "big"),
        _ => false,
    };
    if !native {
        return Ok(None);
    }
    let itemsize: usize = dtype.getattr(intern!(py, "itemsize"))?.extract()?;
    let elem = match (&*kind, itemsize) {
        ("f", 2) => Elem::F16,
        ("f", 4) => Elem::F32,
        ("f", 8) => Elem::F64,
        ("i", 1) => Elem::I8,
        ("i", 2) => Elem::I16,
        ("i", 4) => Elem::I32,
        ("i", 8) => Elem::I64,
        ("u", 1) => Elem::U8,
        ("u", 2) => Elem::U16,
        ("u", 4) => Elem::U32,
        ("u", 8) => Elem::U64,
        ("b", 1) => Elem::Bool,
        _ => return Ok(None),
    };
    let shape: Vec<usize> = obj.getattr(intern!(py, "shape"))?.extract()?;
    if shape.is_empty() {
        return Ok(None);
    }
    let bytes = obj.call_method0(intern!(py, "tobytes"))?;
    let Ok(bytes) = bytes.cast_into::<PyBytes>() else {
        return Ok(None);
    };
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if count.and_then(|n| n.checked_mul(elem.size())) != Some(bytes.as_bytes().len()) {
        return Ok(None);
    }
    Ok(Some(Array { bytes, shape, elem }))
}

/// IEEE half precision to double (exact: every half is a double).
pub fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// Appends `Timestamp.isoformat()` of an exact pandas Timestamp, computed the way pandas does
/// (datetime's isoformat, then nanoseconds inserted before a "+HH:MM" offset) from its
/// nanoseconds since the epoch (`value`, UTC when tz-aware) and its UTC offset; false (nothing
/// appended) for anything out of the ordinary, left to `isoformat()` itself.
pub fn write_isoformat(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<bool> {
    let py = obj.py();
    // Beyond the nanosecond range (other units) `value` raises: isoformat() copes.
    let Ok(value) = obj.getattr(intern!(py, "value")) else {
        return Ok(false);
    };
    let Ok(mut local) = value.extract::<i64>() else {
        return Ok(false);
    };
    let mut offset_text: Vec<u8> = Vec::new();
    let tzinfo = tzinfo_of(obj)?;
    let aware = !tzinfo.is_none();
    if aware {
        let total = match fixed_offset(&tzinfo) {
            Some(total) => total,
            None => {
                let offset = obj.call_method0(intern!(py, "utcoffset"))?;
                // pandas fails on a tzinfo without an offset: let it.
                if offset.is_none() {
                    return Ok(false);
                }
                micros_of(&offset)?
            }
        };
        // pandas keeps sub-second offsets out of `value`: leave them to isoformat().
        if total.abs() >= 86_400_000_000 || total % 1_000_000 != 0 {
            return Ok(false);
        }
        let Some(shifted) = local.checked_add(total * 1000) else {
            return Ok(false);
        };
        local = shifted;
        offset_text.push(if total < 0 { b'-' } else { b'+' });
        let total = total.abs();
        let secs = total / 1_000_000;
        digits(&mut offset_text, secs / 3600, 2);
        offset_text.push(b':');
        digits(&mut offset_text, secs % 3600 / 60, 2);
        if secs % 60 != 0 {
            offset_text.push(b':');
            digits(&mut offset_text, secs % 60, 2);
        }
    }
    const DAY: i64 = 86_400_000_000_000;
    let (days, in_day) = (local.div_euclid(DAY), local.rem_euclid(DAY));
    let (year, month, day) = civil_from_days(days);
    let secs = in_day / 1_000_000_000;
    let micro = in_day % 1_000_000_000 / 1000;
    let nano = in_day % 1000;
    // Versions of pandas differ on where nanoseconds go before a longer offset.
    if !(1..=9999).contains(&year) || nano != 0 && aware && offset_text.len() != 6 {
        return Ok(false);
    }
    digits(out, year, 4);
    out.push(b'-');
    digits(out, month, 2);
    out.push(b'-');
    digits(out, day, 2);
    out.push(b'T');
    digits(out, secs / 3600, 2);
    out.push(b':');
    digits(out, secs % 3600 / 60, 2);
    out.push(b':');
    digits(out, secs % 60, 2);
    if micro != 0 {
        out.push(b'.');
        digits(out, micro, 6);
    }
    if nano != 0 {
        if micro == 0 {
            out.extend_from_slice(b".000000");
        }
        digits(out, nano, 3);
    }
    out.extend_from_slice(&offset_text);
    Ok(true)
}

/// `obj.tzinfo` of an exact pandas Timestamp, read with datetime's own getter: pandas wraps
/// it in a Python property returning `super().tzinfo`, a frame per call for the same object.
/// Where the getter cannot be had (`PyType_GetSlot` of a static type needs 3.10), the
/// attribute is looked up as usual.
fn tzinfo_of<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    static GETTER: PyOnceLock<Option<(Py<PyAny>, usize)>> = PyOnceLock::new();
    let py = obj.py();
    let getter = GETTER.get_or_init(py, || {
        let desc = py
            .import("datetime")
            .and_then(|m| {
                m.getattr("datetime")?
                    .getattr("__dict__")?
                    .get_item("tzinfo")
            })
            .ok()?;
        // SAFETY: desc is a live object; a NULL slot (with an error on 3.9) means "unknown".
        let get = unsafe { ffi::PyType_GetSlot(ffi::Py_TYPE(desc.as_ptr()), ffi::Py_tp_descr_get) };
        if get.is_null() {
            // SAFETY: clearing the error PyType_GetSlot may have set.
            unsafe { ffi::PyErr_Clear() };
            return None;
        }
        Some((desc.unbind(), get as usize))
    });
    match getter {
        // SAFETY: `get` is the descriptor's tp_descr_get, called with the descriptor, a
        // datetime instance and its type, as the attribute lookup would.
        Some((desc, get)) => unsafe {
            let get: ffi::descrgetfunc = std::mem::transmute(*get);
            let ty = ffi::Py_TYPE(obj.as_ptr()).cast::<ffi::PyObject>();
            Bound::from_owned_ptr_or_err(py, get(desc.as_ptr(), obj.as_ptr(), ty))
        },
        None => obj.getattr(intern!(py, "tzinfo")),
    }
}

/// A timedelta in microseconds (datetime's format_utcoffset writes the sign, then |offset|).
fn micros_of(delta: &Bound<'_, PyAny>) -> PyResult<i64> {
    let py = delta.py();
    let days: i64 = delta.getattr(intern!(py, "days"))?.extract()?;
    let seconds: i64 = delta.getattr(intern!(py, "seconds"))?.extract()?;
    let micros: i64 = delta.getattr(intern!(py, "microseconds"))?.extract()?;
    Ok((days * 86_400 + seconds) * 1_000_000 + micros)
}

/// `datetime.timezone` objects met so far, with their offsets in microseconds. The type is
/// final and its instances immutable, so the offset is the same for every datetime; other
/// tzinfo classes (zoneinfo, pytz, dateutil, subclasses of tzinfo) vary with the date and are
/// asked each time. The objects are held so that their addresses stay theirs.
static FIXED_OFFSETS: Mutex<Vec<(Py<PyAny>, i64)>> = Mutex::new(Vec::new());
const MAX_FIXED_OFFSETS: usize = 64;

/// The offset of `tzinfo` when it is a `datetime.timezone`, from the table or computed once.
fn fixed_offset(tzinfo: &Bound<'_, PyAny>) -> Option<i64> {
    {
        let known = FIXED_OFFSETS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, total)) = known.iter().find(|(t, _)| t.as_ptr() == tzinfo.as_ptr()) {
            return Some(*total);
        }
    }
    let py = tzinfo.py();
    let timezone = TIMEZONE
        .get_or_try_init(py, || -> PyResult<Py<PyType>> {
            Ok(py
                .import("datetime")?
                .getattr("timezone")?
                .cast_into()?
                .unbind())
        })
        .ok()?;
    if !tzinfo.get_type().is(timezone.bind(py)) {
        return None;
    }
    let total = micros_of(
        &tzinfo
            .call_method1(intern!(py, "utcoffset"), (py.None(),))
            .ok()?,
    )
    .ok()?;
    let mut known = FIXED_OFFSETS.lock().unwrap_or_else(|e| e.into_inner());
    if known.len() < MAX_FIXED_OFFSETS {
        known.push((tzinfo.clone().unbind(), total));
    }
    Some(total)
}

static TIMEZONE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `v` in decimal, zero-padded to `width` digits (`v` is not negative).
fn digits(out: &mut Vec<u8>, v: i64, width: usize) {
    let len = v.checked_ilog10().unwrap_or(0) as usize + 1;
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(len)));
    format::write_u64(out, v as u64);
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
