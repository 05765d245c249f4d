//! The legacy sanitizing rules, applied to Python objects one value at a time.
//!
//! The legacy pipeline ran two recursive passes (telemetry, then artifact) and then
//! `json.dumps`. Running them one after another would build two throw-away copies of the
//! document; instead `classify` answers, for one object and the passes that still apply to it,
//! what JSON value it stands for. The encoder and `sanitize()` both walk the document with it,
//! so the rules live in one place.

use std::cell::RefCell;
use std::rc::Rc;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};

use super::encode::dict_next;
use super::errors::{SerError, SerErrorKind};
use super::text::{str_utf8, Text};
use crate::format;

/// Which legacy passes still apply to a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rules {
    /// Telemetry pass, then artifact pass: what `write_json` and `canonical_bytes` do.
    Both,
    /// Only the artifact pass: the telemetry pass stopped above this value (an Enum's value,
    /// a frozenset), or the caller asked for it (`compat.write_atomic_json`).
    Artifact,
    /// No pass: `json.dumps` sees the value as it is.
    Json,
    /// Only the telemetry pass, for `compat.sanitize_for_json` (never encoded).
    Telemetry,
}

/// Everything about the encoding that changes what a value becomes.
pub struct Profile<'py> {
    /// Dict keys of `Rules::Json` values are sorted (`json.dumps(sort_keys=True)`).
    pub sort_keys: bool,
    /// Dict keys of unsupported types are skipped instead of raising (`json.dumps(skipkeys=True)`).
    pub skipkeys: bool,
    /// NaN and infinities are written (`NaN`, `Infinity`) rather than refused.
    pub allow_nan: bool,
    /// Values `json.dumps` rejects get the conversions atomicjson adds over the legacy helpers
    /// (datetimes, paths, NaT, numpy, ...) instead of a `TypeError`.
    pub extended: bool,
    /// `json.dumps(default=...)`, called for values of unsupported types.
    pub default: Option<Bound<'py, PyAny>>,
    /// What the walk learnt about the document so far (one walk: nothing outlives the call).
    pub memo: Memo<'py>,
}

/// Facts the walk reuses: documents hold many members of one Enum class. (Key orders, which
/// documents also repeat, are kept per thread across calls: `KEY_ORDERS`.)
#[derive(Default)]
pub struct Memo<'py> {
    /// Enum classes met, and what their `value` is.
    enum_types: RefCell<Vec<(Bound<'py, PyType>, EnumClass)>>,
}

/// What the walk knows about an Enum class.
#[derive(Clone, Copy)]
enum EnumClass {
    /// Members met so far, before the class was checked.
    Seen(u32),
    /// `value` is Enum's own property: `_value_` is read directly.
    Plain,
    /// Anything else: `value` is looked up as usual.
    Custom,
}

/// The member of a class from which its `value` is checked (see `enum_value`).
const ENUM_CHECK_AFTER: u32 = 3;

/// The sorted order of a dict's str keys: `keys` (strong references, so the addresses stay
/// theirs) in the dict's order, `order` the positions in sorted order.
struct KeyOrder {
    keys: Vec<Py<PyString>>,
    order: Rc<[usize]>,
}

/// How many key orders a thread keeps, and how many keys in all: at most ~1 MiB of keys and
/// positions, whatever the documents.
const MAX_ORDERS: usize = 32;
const MAX_HELD_KEYS: usize = 1 << 16;

thread_local! {
    /// Key orders of dicts already sorted, found again by the identity of their keys (least
    /// recently used first). Kept from one call to the next: a pipeline writes documents of
    /// one shape again and again (per-feature maps over one feature list), and sorting 4,900
    /// feature names took ~0.1 ms of every 4 MB write.
    static KEY_ORDERS: RefCell<Vec<KeyOrder>> = const { RefCell::new(Vec::new()) };
}

/// One dict entry, with its key already turned into the text written to the file.
pub struct Entry<'py> {
    pub key: Text<'py>,
    pub value: Bound<'py, PyAny>,
}

/// What a Python object stands for in the output.
pub enum Node<'py> {
    Null,
    Bool(bool),
    /// An `int` or a subclass (written as `int.__repr__` would).
    Int(Bound<'py, PyAny>),
    /// A `float` or a subclass (written as `float.__repr__` would).
    Float(Bound<'py, PyAny>),
    Str(Text<'py>),
    /// A list or tuple, read item by item while writing (it may change under a callback).
    Seq(Bound<'py, PyAny>, Rules),
    /// A sequence computed here (a sorted set).
    Items(Vec<Bound<'py, PyAny>>, Rules),
    /// Entries in output order. `empty_source` tells `{}` from a dict whose keys were all skipped,
    /// which `json.dumps` lays out differently.
    Object {
        entries: Vec<Entry<'py>>,
        rules: Rules,
        empty_source: bool,
    },
    /// A dict under `json.dumps` rules with keys still to convert (`json_key`), in output order.
    JsonObject {
        items: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
        empty_source: bool,
    },
    /// Write this object instead (an Enum's value, a numpy item, what `default` returned).
    Redirect(Bound<'py, PyAny>, Rules),
}

/// Types and functions the rules look up, imported once.
struct Cache {
    enum_type: Py<PyType>,
    date_type: Py<PyType>,
    time_type: Py<PyType>,
    int_repr: Py<PyAny>,
    dataclass_fields: Py<PyAny>,
    fsdecode: Py<PyAny>,
}

static CACHE: PyOnceLock<Cache> = PyOnceLock::new();

fn cache(py: Python<'_>) -> PyResult<&Cache> {
    CACHE.get_or_try_init(py, || {
        let datetime = py.import("datetime")?;
        let builtins = py.import("builtins")?;
        Ok(Cache {
            enum_type: py.import("enum")?.getattr("Enum")?.cast_into()?.unbind(),
            date_type: datetime.getattr("date")?.cast_into()?.unbind(),
            time_type: datetime.getattr("time")?.cast_into()?.unbind(),
            int_repr: builtins.getattr("int")?.getattr("__repr__")?.unbind(),
            dataclass_fields: py.import("dataclasses")?.getattr("fields")?.unbind(),
            fsdecode: py.import("os")?.getattr("fsdecode")?.unbind(),
        })
    })
}

#[inline]
fn type_ptr(obj: &Bound<'_, PyAny>) -> *mut ffi::PyTypeObject {
    // SAFETY: obj is a live object.
    unsafe { ffi::Py_TYPE(obj.as_ptr()) }
}

fn is_subtype(obj: &Bound<'_, PyAny>, ty: &Py<PyType>) -> bool {
    // SAFETY: both are live type objects.
    unsafe { ffi::PyType_IsSubtype(type_ptr(obj), ty.as_ptr().cast()) != 0 }
}

/// Classify `obj` under `rules`. Exact built-in types come first: they are nearly all of a
/// document and mean the same under every rule set.
#[inline]
pub fn classify<'py>(
    obj: &Bound<'py, PyAny>,
    rules: Rules,
    profile: &Profile<'py>,
) -> Result<Node<'py>, SerError> {
    // SAFETY: the addresses of the static type objects and singletons.
    unsafe {
        let ty = type_ptr(obj);
        if std::ptr::eq(ty, &raw mut ffi::PyUnicode_Type) {
            return Ok(Node::Str(Text::from_str_object(
                obj.cast_unchecked::<PyString>(),
            )?));
        }
        if std::ptr::eq(ty, &raw mut ffi::PyLong_Type) {
            return Ok(Node::Int(obj.clone()));
        }
        if std::ptr::eq(ty, &raw mut ffi::PyFloat_Type) {
            return Ok(Node::Float(obj.clone()));
        }
        let ptr = obj.as_ptr();
        if ptr == ffi::Py_True() {
            return Ok(Node::Bool(true));
        }
        if ptr == ffi::Py_False() {
            return Ok(Node::Bool(false));
        }
        if ptr == ffi::Py_None() {
            return Ok(Node::Null);
        }
        if std::ptr::eq(ty, &raw mut ffi::PyDict_Type) {
            return object(obj.cast_unchecked::<PyDict>(), rules, profile);
        }
        if std::ptr::eq(ty, &raw mut ffi::PyList_Type)
            || std::ptr::eq(ty, &raw mut ffi::PyTuple_Type)
        {
            return Ok(Node::Seq(obj.clone(), rules));
        }
    }
    match rules {
        Rules::Both => telemetry_rules(obj, profile),
        Rules::Artifact => artifact_rules(obj, profile),
        Rules::Json => json_rules(obj, profile, profile.extended),
        Rules::Telemetry => telemetry_only_rules(obj, profile),
    }
}

/// The first legacy pass on its own: pandas Timestamps (only) to isoformat, Enums to their
/// values, containers rebuilt, everything else left as it is (`Rules::Json` keeps it).
fn telemetry_only_rules<'py>(
    obj: &Bound<'py, PyAny>,
    profile: &Profile<'py>,
) -> Result<Node<'py>, SerError> {
    let py = obj.py();
    if is_pandas_timestamp(obj)? {
        let iso = obj.call_method0(intern!(py, "isoformat"))?;
        return Ok(Node::Str(Text::from_str_object(iso.cast::<PyString>()?)?));
    }
    if is_subtype(obj, &cache(py)?.enum_type) {
        return Ok(Node::Redirect(enum_value(obj, profile)?, Rules::Json));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        return object(dict, Rules::Telemetry, profile);
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return Ok(Node::Seq(obj.clone(), Rules::Telemetry));
    }
    // SAFETY: obj is live.
    if unsafe { ffi::PySet_Check(obj.as_ptr()) } != 0 {
        return Ok(Node::Items(sorted_by_str(obj)?, Rules::Telemetry));
    }
    Ok(Node::Redirect(obj.clone(), Rules::Json))
}

/// `member.value`. Enum's own `value` property returns `self._value_`; when the member's class
/// and its bases leave it in place (no member or attribute named `value` shadows it, no
/// `__getattribute__` of their own), `_value_` is read directly, skipping the property's
/// Python frame. A class is checked once per walk, from its `ENUM_CHECK_AFTER`-th member on
/// (the check costs about what a few property calls do).
fn enum_value<'py>(
    obj: &Bound<'py, PyAny>,
    profile: &Profile<'py>,
) -> Result<Bound<'py, PyAny>, SerError> {
    let py = obj.py();
    let ty_ptr = type_ptr(obj).cast::<ffi::PyObject>();
    let state = {
        let mut types = profile.memo.enum_types.borrow_mut();
        match types.iter_mut().find(|(t, _)| t.as_ptr() == ty_ptr) {
            Some((_, EnumClass::Seen(n))) if *n < ENUM_CHECK_AFTER => {
                *n += 1;
                EnumClass::Seen(*n)
            }
            Some((_, state)) => *state,
            None => {
                types.push((obj.get_type(), EnumClass::Seen(1)));
                EnumClass::Seen(1)
            }
        }
    };
    let plain = match state {
        EnumClass::Seen(n) if n < ENUM_CHECK_AFTER => false,
        EnumClass::Seen(_) => {
            let plain = has_enums_own_value(&obj.get_type())?;
            let mut types = profile.memo.enum_types.borrow_mut();
            if let Some((_, state)) = types.iter_mut().find(|(t, _)| t.as_ptr() == ty_ptr) {
                *state = if plain {
                    EnumClass::Plain
                } else {
                    EnumClass::Custom
                };
            }
            plain
        }
        EnumClass::Plain => true,
        EnumClass::Custom => false,
    };
    let name = if plain {
        intern!(py, "_value_")
    } else {
        intern!(py, "value")
    };
    Ok(obj.getattr(name)?)
}

/// Whether `value` on instances of `ty` is `enum.Enum.value` itself: attribute access is the
/// generic one (no `__getattribute__` of the class's own) and the first class of the MRO
/// that defines `value` is Enum.
fn has_enums_own_value(ty: &Bound<'_, PyType>) -> PyResult<bool> {
    let py = ty.py();
    // SAFETY: ty is a live type object; Enum classes are heap types, whose slots
    // PyType_GetSlot reads on every supported version.
    let getattro = unsafe { ffi::PyType_GetSlot(ty.as_ptr().cast(), ffi::Py_tp_getattro) };
    if getattro != ffi::PyObject_GenericGetAttr as *mut std::ffi::c_void {
        return Ok(false);
    }
    let value = intern!(py, "value");
    let enum_type = cache(py)?.enum_type.bind(py);
    for class in ty.getattr(intern!(py, "__mro__"))?.try_iter()? {
        let class = class?;
        if class.getattr(intern!(py, "__dict__"))?.contains(value)? {
            return Ok(class.is(enum_type));
        }
    }
    Ok(false)
}

fn is_pandas_timestamp(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    static TIMESTAMP: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    let py = obj.py();
    if let Some(ty) = TIMESTAMP.get(py) {
        return obj.is_instance(ty.bind(py));
    }
    // Only look once pandas is imported: atomicjson never imports it.
    let modules = py.import("sys")?.getattr("modules")?;
    match modules.get_item("pandas") {
        Ok(pandas) => {
            let ty: Bound<'_, PyType> = pandas.getattr("Timestamp")?.cast_into()?;
            let _ = TIMESTAMP.set(py, ty.clone().unbind());
            obj.is_instance(&ty)
        }
        Err(_) => Ok(false),
    }
}

/// Whether `obj` is exactly one of pathlib's path classes (subclasses may define their own
/// `__fspath__`). The classes are looked up once pathlib is imported: atomicjson never imports
/// it, and a path object cannot exist before.
fn is_exact_pathlib_path(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    static PATH_TYPES: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();
    let py = obj.py();
    let types = match PATH_TYPES.get(py) {
        Some(types) => types,
        None => {
            let modules = py.import("sys")?.getattr("modules")?;
            let Ok(pathlib) = modules.get_item("pathlib") else {
                return Ok(false);
            };
            let mut types = Vec::new();
            for name in [
                "PurePosixPath",
                "PureWindowsPath",
                "PosixPath",
                "WindowsPath",
            ] {
                if let Some(ty) = pathlib.getattr_opt(name)? {
                    if let Ok(ty) = ty.cast_into::<PyType>() {
                        types.push(ty.unbind());
                    }
                }
            }
            PATH_TYPES.get_or_init(py, || types)
        }
    };
    let ty = type_ptr(obj).cast::<ffi::PyObject>();
    Ok(types.iter().any(|t| t.as_ptr() == ty))
}

/// `sorted(s, key=str)`: by the str() of the elements, stable.
fn sorted_by_str<'py>(obj: &Bound<'py, PyAny>) -> Result<Vec<Bound<'py, PyAny>>, SerError> {
    let mut keyed = Vec::new();
    for item in obj.try_iter()? {
        let item = item?;
        keyed.push((str_of(&item)?, item));
    }
    let n = keyed.len();
    // SAFETY: a type check on live objects.
    let all_str = keyed
        .iter()
        .all(|(_, item)| unsafe { ffi::PyUnicode_CheckExact(item.as_ptr()) } != 0);
    // A set of strs met again (the same objects, iterated in the same order) reuses its order.
    let order: Rc<[usize]> = if all_str && n >= 2 {
        // SAFETY: every item is a live exact str, held by `keyed`.
        unsafe { str_key_order(obj.py(), n, |i| keyed[i].1.as_ptr(), |i| keyed[i].0.bytes()) }
    } else {
        text_order(n, |i| keyed[i].0.bytes()).into()
    };
    let mut items: Vec<Option<Bound<'py, PyAny>>> =
        keyed.into_iter().map(|(_, v)| Some(v)).collect();
    Ok(order.iter().filter_map(|&i| items[i].take()).collect())
}

/// The first legacy pass; what it leaves unchanged goes on to the artifact pass.
fn telemetry_rules<'py>(
    obj: &Bound<'py, PyAny>,
    profile: &Profile<'py>,
) -> Result<Node<'py>, SerError> {
    let py = obj.py();
    if let Some(node) = datetime_like(obj)? {
        return Ok(node);
    }
    if is_subtype(obj, &cache(py)?.enum_type) {
        return Ok(Node::Redirect(enum_value(obj, profile)?, Rules::Artifact));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        return object(dict, Rules::Both, profile);
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return Ok(Node::Seq(obj.clone(), Rules::Both));
    }
    // SAFETY: obj is live.
    if unsafe { ffi::PySet_Check(obj.as_ptr()) } != 0 {
        return Ok(Node::Items(sorted_by_str(obj)?, Rules::Both));
    }
    artifact_rules(obj, profile)
}

/// The second legacy pass, in its order (first match wins), then `json.dumps` for the rest.
fn artifact_rules<'py>(
    obj: &Bound<'py, PyAny>,
    profile: &Profile<'py>,
) -> Result<Node<'py>, SerError> {
    let py = obj.py();
    if obj.is_none() {
        return Ok(Node::Null);
    }
    if let Some(node) = datetime_like(obj)? {
        return Ok(node);
    }
    if is_subtype(obj, &cache(py)?.enum_type) {
        // The legacy pass takes the value and does not look at it again.
        return Ok(Node::Redirect(enum_value(obj, profile)?, Rules::Json));
    }
    if is_exact_pathlib_path(obj)? {
        // pathlib's `__fspath__` returns `str(self)`, which `os.fsdecode` keeps: one frame less.
        return Ok(Node::Str(Text::from_str_object(&obj.str()?)?));
    }
    let ty = obj.get_type();
    if !obj.is_instance_of::<PyString>() && ty.hasattr(intern!(py, "__fspath__"))? {
        // pathlib.Path in the legacy; any os.PathLike here.
        let fspath = obj.call_method0(intern!(py, "__fspath__"))?;
        // os.fsdecode returns a str as it is (pathlib.Path gives one): only bytes need it.
        let text = if fspath.is_exact_instance_of::<PyString>() {
            fspath
        } else {
            cache(py)?.fsdecode.bind(py).call1((fspath,))?
        };
        return Ok(Node::Str(Text::from_str_object(text.cast::<PyString>()?)?));
    }
    if type_module(&ty)?.starts_with("numpy") {
        let ndim: i64 = match obj.getattr_opt(intern!(py, "ndim"))? {
            Some(n) => n.extract().unwrap_or(0),
            None => 0,
        };
        let method = if ndim > 0 {
            intern!(py, "tolist")
        } else {
            intern!(py, "item")
        };
        return Ok(Node::Redirect(obj.call_method0(method)?, Rules::Artifact));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        return object(dict, Rules::Artifact, profile);
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return Ok(Node::Seq(obj.clone(), Rules::Artifact));
    }
    // SAFETY: obj is live.
    if unsafe { ffi::PyAnySet_Check(obj.as_ptr()) } != 0 {
        return sorted_set(obj, profile);
    }
    if !obj.is_instance_of::<PyType>() && obj.hasattr(intern!(py, "__dataclass_fields__"))? {
        let fields = cache(py)?.dataclass_fields.bind(py).call1((obj,))?;
        let mut entries = Vec::new();
        for field in fields.try_iter()? {
            let name = field?.getattr(intern!(py, "name"))?;
            let value = obj.getattr(name.cast::<PyString>()?)?;
            entries.push(Entry {
                key: Text::from_str_object(name.cast::<PyString>()?)?,
                value,
            });
        }
        return sorted_entries(entries, Rules::Artifact, false);
    }
    if ty.name()?.to_cow()? == "Decimal" {
        return Ok(Node::Str(Text::from_str_object(&obj.str()?)?));
    }
    json_rules(obj, profile, false)
}

/// What `json.dumps` accepts: str, int, float, list, tuple, dict and their subclasses.
/// Anything else goes to the extended conversions, to `default`, or is an error.
fn json_rules<'py>(
    obj: &Bound<'py, PyAny>,
    profile: &Profile<'py>,
    extended: bool,
) -> Result<Node<'py>, SerError> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Node::Str(Text::from_str_object(s)?));
    }
    // SAFETY: obj is live.
    unsafe {
        if ffi::PyLong_Check(obj.as_ptr()) != 0 {
            return Ok(Node::Int(obj.clone()));
        }
        if ffi::PyFloat_Check(obj.as_ptr()) != 0 {
            return Ok(Node::Float(obj.clone()));
        }
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return Ok(Node::Seq(obj.clone(), Rules::Json));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        return object(dict, Rules::Json, profile);
    }
    if extended {
        return artifact_rules(obj, profile);
    }
    if let Some(default) = &profile.default {
        return Ok(Node::Redirect(default.call1((obj,))?, Rules::Json));
    }
    Err(SerErrorKind::UnsupportedType(type_name(obj)).into())
}

/// datetime, date, time and pandas Timestamp become `isoformat()`; pandas NaT becomes null.
fn datetime_like<'py>(obj: &Bound<'py, PyAny>) -> Result<Option<Node<'py>>, SerError> {
    let py = obj.py();
    let cache = cache(py)?;
    // datetime.datetime (and so pandas.Timestamp) subclasses datetime.date.
    if !is_subtype(obj, &cache.date_type) && !is_subtype(obj, &cache.time_type) {
        return Ok(None);
    }
    let ty = obj.get_type();
    if ty.name()?.to_cow()? == "NaTType" && type_module(&ty)?.starts_with("pandas") {
        return Ok(Some(Node::Null));
    }
    let iso = obj.call_method0(intern!(py, "isoformat"))?;
    Ok(Some(Node::Str(Text::from_str_object(
        iso.cast::<PyString>()?,
    )?)))
}

pub fn type_module(ty: &Bound<'_, PyType>) -> PyResult<String> {
    match ty.getattr_opt(intern!(ty.py(), "__module__"))? {
        Some(m) => Ok(m.extract::<String>().unwrap_or_default()),
        None => Ok(String::new()),
    }
}

pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

/// `str(obj)` as text, computed without a Python call for the common exact types.
pub fn str_of<'py>(obj: &Bound<'py, PyAny>) -> Result<Text<'py>, SerError> {
    // SAFETY: the addresses of the static type objects and singletons.
    unsafe {
        let ty = type_ptr(obj);
        if std::ptr::eq(ty, &raw mut ffi::PyUnicode_Type) {
            return Text::from_str_object(obj.cast_unchecked::<PyString>());
        }
        if std::ptr::eq(ty, &raw mut ffi::PyLong_Type) {
            if let Some(v) = small_int(obj) {
                let mut out = Vec::with_capacity(20);
                format::write_i64(&mut out, v);
                return Ok(Text::Utf8(out));
            }
        } else if std::ptr::eq(ty, &raw mut ffi::PyFloat_Type) {
            let v = ffi::PyFloat_AsDouble(obj.as_ptr());
            let mut out = Vec::with_capacity(24);
            // str(float) spells the non-finite values the Python way, not the JSON way.
            if v.is_nan() {
                out.extend_from_slice(b"nan");
            } else if v.is_infinite() {
                out.extend_from_slice(if v > 0.0 { b"inf" } else { b"-inf" });
            } else {
                format::write_float(&mut out, v);
            }
            return Ok(Text::Utf8(out));
        }
        let ptr = obj.as_ptr();
        if ptr == ffi::Py_True() {
            return Ok(Text::Static("True"));
        }
        if ptr == ffi::Py_False() {
            return Ok(Text::Static("False"));
        }
        if ptr == ffi::Py_None() {
            return Ok(Text::Static("None"));
        }
    }
    Text::from_str_object(&obj.str()?)
}

/// The value of an int (or subclass) when it fits in 64 bits; never calls Python code.
#[inline]
pub fn small_int(obj: &Bound<'_, PyAny>) -> Option<i64> {
    let mut overflow = 0;
    // SAFETY: obj is an int or an int subclass, read without calling __index__.
    let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &mut overflow) };
    if overflow != 0 {
        return None;
    }
    if v == -1 && unsafe { !ffi::PyErr_Occurred().is_null() } {
        // SAFETY: clearing the error we just caused.
        unsafe { ffi::PyErr_Clear() };
        return None;
    }
    Some(v)
}

/// `int.__repr__(obj)` for ints beyond 64 bits. Python's limit on the digits of an int's str
/// (`sys.set_int_max_str_digits`) applies, as in `json.dumps`.
pub fn big_int_repr<'py>(obj: &Bound<'py, PyAny>) -> Result<Bound<'py, PyAny>, SerError> {
    let py = obj.py();
    cache(py)?.int_repr.bind(py).call1((obj,)).map_err(|err| {
        if err.is_instance_of::<pyo3::exceptions::PyValueError>(py) {
            SerErrorKind::IntTooLong(err.to_string()).into()
        } else {
            err.into()
        }
    })
}

/// The entries of a dict, keys converted and ordered as `rules` say.
fn object<'py>(
    dict: &Bound<'py, PyDict>,
    rules: Rules,
    profile: &Profile<'py>,
) -> Result<Node<'py>, SerError> {
    let len = dict.len();
    if matches!(rules, Rules::Both | Rules::Artifact) {
        if let Some(entries) = str_key_entries(dict, len) {
            return sorted_str_entries(entries, rules);
        }
    }
    // Take strong references first, running no Python code, so that a callback later in the
    // walk cannot change the dict under the iteration.

    let mut raw: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> = Vec::with_capacity(len);
    let mut pos: ffi::Py_ssize_t = 0;
    let mut key: *mut ffi::PyObject = std::ptr::null_mut();
    let mut value: *mut ffi::PyObject = std::ptr::null_mut();
    let py = dict.py();
    // SAFETY: PyDict_Next yields borrowed references that we turn into owned ones at once.
    unsafe {
        while ffi::PyDict_Next(dict.as_ptr(), &mut pos, &mut key, &mut value) != 0 {
            raw.push((
                Bound::from_borrowed_ptr(py, key),
                Bound::from_borrowed_ptr(py, value),
            ));
        }
    }
    match rules {
        Rules::Telemetry => {
            // The first pass alone returns a dict whose order shows: the legacy built it in
            // the order of the raw keys; keys that do not compare fall back to str() order.
            let order = raw_key_order(py, &raw)?;
            let mut entries = Vec::with_capacity(raw.len());
            for (k, v) in raw {
                entries.push(Entry {
                    key: str_of(&k)?,
                    value: v,
                });
            }
            let Some(order) = order else {
                return sorted_entries(entries, rules, len == 0);
            };
            let mut texts: Vec<&[u8]> = entries.iter().map(|e| e.key.bytes()).collect();
            texts.sort_unstable();
            if let Some(pair) = texts.windows(2).find(|w| w[0] == w[1]) {
                let key = String::from_utf8_lossy(pair[0]).into_owned();
                return Err(SerErrorKind::KeyCollision(key).into());
            }
            let mut slots: Vec<Option<Entry<'py>>> = entries.into_iter().map(Some).collect();
            let entries = order.into_iter().filter_map(|i| slots[i].take()).collect();
            Ok(Node::Object {
                entries,
                rules,
                empty_source: len == 0,
            })
        }
        Rules::Both | Rules::Artifact => {
            let mut entries = Vec::with_capacity(raw.len());
            for (k, v) in raw {
                entries.push(Entry {
                    key: str_of(&k)?,
                    value: v,
                });
            }
            sorted_entries(entries, rules, len == 0)
        }
        Rules::Json => json_object(dict, raw, profile, len == 0),
    }
}

/// The entries of a dict whose keys are all exact `str`, in one pass and with one reference
/// per key and value; `None` (nothing taken) when a key is of another type or holds lone
/// surrogates, whose conversion `str_of` owns.
fn str_key_entries<'py>(dict: &Bound<'py, PyDict>, len: usize) -> Option<Vec<Entry<'py>>> {
    let mut entries: Vec<Entry<'py>> = Vec::with_capacity(len);
    let mut pos: ffi::Py_ssize_t = 0;
    let mut key: *mut ffi::PyObject = std::ptr::null_mut();
    let mut value: *mut ffi::PyObject = std::ptr::null_mut();
    let py = dict.py();
    let ptr = dict.as_ptr();
    // SAFETY: both yield borrowed references, turned into owned ones before any Python code
    // runs; no code here runs Python code. `dict_next` reads exact dicts only (subclasses
    // such as OrderedDict keep their own bookkeeping).
    unsafe {
        let exact = ffi::PyDict_CheckExact(ptr) != 0;
        while if exact {
            dict_next(ptr, &mut pos, &mut key, &mut value)
        } else {
            ffi::PyDict_Next(ptr, &mut pos, &mut key, &mut value) != 0
        } {
            if ffi::PyUnicode_CheckExact(key) == 0 {
                return None;
            }
            // An ASCII key's characters are read where they lie (no call).
            let text = str_utf8(key)?;
            let owner = Bound::from_borrowed_ptr(py, key).cast_into_unchecked();
            let value = Bound::from_borrowed_ptr(py, value);
            if entries.len() == entries.capacity() {
                entries.reserve(1);
            }
            // Each field written straight into the entry's slot: `push` built the entry on the
            // stack and copied it with wider loads than the stores that made it (a stalled
            // store forward per key, ~4% of a large canonical write).
            let slot = entries.as_mut_ptr().add(entries.len());
            std::ptr::addr_of_mut!((*slot).value).write(value);
            std::ptr::addr_of_mut!((*slot).key).write(Text::Borrowed {
                owner,
                ptr: text.as_ptr(),
                len: text.len(),
            });
            entries.set_len(entries.len() + 1);
        }
    }
    Some(entries)
}

/// The positions of `raw` ordered by their keys as Python compares them, or `None` when the
/// keys do not compare.
fn raw_key_order<'py>(
    py: Python<'py>,
    raw: &[(Bound<'py, PyAny>, Bound<'py, PyAny>)],
) -> Result<Option<Vec<usize>>, SerError> {
    let keyed = PyList::empty(py);
    for (i, (k, _)) in raw.iter().enumerate() {
        keyed.append((k, i))?;
    }
    match keyed.sort() {
        Ok(()) => Ok(Some(
            keyed
                .iter()
                .map(|t| t.get_item(1)?.extract::<usize>())
                .collect::<PyResult<_>>()?,
        )),
        Err(err) if err.is_instance_of::<pyo3::exceptions::PyTypeError>(py) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// `a < b` in code point order; the first eight bytes decide most pairs with one compare.
#[inline]
pub fn key_less(a: &[u8], b: &[u8]) -> bool {
    if a.len() >= 8 && b.len() >= 8 {
        let x = u64::from_be_bytes(a[..8].try_into().unwrap_or_default());
        let y = u64::from_be_bytes(b[..8].try_into().unwrap_or_default());
        if x != y {
            return x < y;
        }
    }
    a < b
}

/// The first 16 bytes of a key as a number that orders as the bytes do (shorter keys padded
/// with zeros, which keeps a prefix before its extensions).
#[inline]
fn key_prefix(key: &[u8]) -> u128 {
    let mut head = [0u8; 16];
    let n = key.len().min(16);
    head[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(head)
}

/// The positions of `entries` in key text order.
fn key_text_order(entries: &[Entry<'_>]) -> Vec<usize> {
    text_order(entries.len(), |i| entries[i].key.bytes())
}

/// The positions `0..n` in the order of their texts, stable (equal texts keep their order).
/// Sorted by their first 16 bytes as integers, which orders nearly all pairs of the long
/// feature-name keys; only runs of equal prefixes then compare in full. A comparison of the
/// prefixes alone sorts faster than one that may go on to the texts (2,450 feature names:
/// 40 against 63 µs).
fn text_order<'t>(n: usize, text: impl Fn(usize) -> &'t [u8]) -> Vec<usize> {
    let mut order: Vec<(u128, usize)> = (0..n).map(|i| (key_prefix(text(i)), i)).collect();
    order.sort_unstable_by_key(|&(prefix, _)| prefix);
    let mut start = 0;
    while start < n {
        let prefix = order[start].0;
        let end = start + order[start..].iter().take_while(|e| e.0 == prefix).count();
        if end - start > 1 {
            order[start..end].sort_unstable_by(|a, b| text(a.1).cmp(text(b.1)).then(a.1.cmp(&b.1)));
        }
        start = end;
    }
    order.into_iter().map(|(_, i)| i).collect()
}

/// Reorder `entries` to `order`, a permutation of their positions (made by `key_text_order`
/// for these entries or for as many keys of an earlier dict): entry `i` becomes the one at
/// `order[i]`. In place, one cycle of the permutation at a time, without a second vector.
fn apply_order(entries: &mut [Entry<'_>], order: &[usize]) {
    let n = entries.len();
    assert_eq!(order.len(), n, "an order of another length");
    // Positions already holding their final entry; one word covers most dicts.
    let mut small = 0u64;
    let mut large = if n > 64 {
        vec![0u64; n.div_ceil(64)]
    } else {
        Vec::new()
    };
    let words: &mut [u64] = if n > 64 {
        &mut large
    } else {
        std::slice::from_mut(&mut small)
    };
    let base = entries.as_mut_ptr();
    for start in 0..n {
        if words[start / 64] & (1 << (start % 64)) != 0 {
            continue;
        }
        // SAFETY: every position is in 0..n (a permutation of the positions); along a cycle
        // each entry is moved once into the slot that wants it and the first one, held in
        // `first`, goes into the last slot of the cycle, so every entry ends up in exactly one
        // slot and none is dropped or duplicated. Nothing here can panic between the read
        // and the final write (indices come from the permutation).
        unsafe {
            let first = std::ptr::read(base.add(start));
            let mut at = start;
            loop {
                words[at / 64] |= 1 << (at % 64);
                let from = *order.get_unchecked(at);
                if from == start {
                    std::ptr::write(base.add(at), first);
                    break;
                }
                std::ptr::copy_nonoverlapping(base.add(from), base.add(at), 1);
                at = from;
            }
        }
    }
}

fn sort_by_key_text(entries: &mut Vec<Entry<'_>>) {
    let order = key_text_order(entries);
    apply_order(entries, &order);
}

/// `sorted_entries` for the entries of `str_key_entries`, with the key order of `str_key_order`.
fn sorted_str_entries(mut entries: Vec<Entry<'_>>, rules: Rules) -> Result<Node<'_>, SerError> {
    let empty_source = entries.is_empty();
    let n = entries.len();
    if !(2..=MAX_HELD_KEYS).contains(&n)
        || entries
            .windows(2)
            .all(|w| key_less(w[0].key.bytes(), w[1].key.bytes()))
    {
        return sorted_entries(entries, rules, empty_source);
    }
    let owner = |i: usize| match &entries[i].key {
        Text::Borrowed { owner, .. } => owner.as_ptr(),
        _ => std::ptr::null_mut(),
    };
    if (0..n).any(|i| owner(i).is_null()) {
        return sorted_entries(entries, rules, empty_source);
    }
    let py = entries[0].value.py();
    // SAFETY: every key is a live exact str, owned by its entry.
    let order = unsafe { str_key_order(py, n, owner, |i| entries[i].key.bytes()) };
    // No collision check: the exact str keys of one dict are distinct texts.
    apply_order(&mut entries, &order);
    Ok(Node::Object {
        entries,
        rules,
        empty_source,
    })
}

/// The key text order of a dict's `n` exact str keys (`key(i)` the i-th key object in dict
/// order, `text(i)` its text), reusing the order of an earlier dict (of this walk or of an
/// earlier call on this thread) with the same key objects in the same order: a str's text
/// never changes, so the same keys sort the same way. A new order is kept for later dicts (at
/// most `MAX_ORDERS` orders, `MAX_HELD_KEYS` keys; the least recently used goes first).
///
/// # Safety
/// Every `key(i)` is a live exact str (a kept order holds a reference to each).
pub unsafe fn str_key_order<'py, 't>(
    py: Python<'py>,
    n: usize,
    key: impl Fn(usize) -> *mut ffi::PyObject,
    text: impl Fn(usize) -> &'t [u8],
) -> Rc<[usize]> {
    let same_keys = |known: &KeyOrder| {
        known.keys.len() == n
            && known
                .keys
                .iter()
                .enumerate()
                .all(|(i, k)| k.as_ptr() == key(i))
    };
    // Newest first, and a hit becomes the newest: the shape a walk meets again and again is
    // found at once, and the large orders a document reuses (its per-feature maps) outlive
    // the small shapes met between them, and the end of one call.
    let known = KEY_ORDERS.try_with(|orders| {
        let mut orders = orders.borrow_mut();
        let at = orders.iter().rposition(same_keys)?;
        let hit = orders.remove(at);
        let order = hit.order.clone();
        orders.push(hit);
        Some(order)
    });
    if let Ok(Some(order)) = known {
        return order;
    }
    let order: Rc<[usize]> = text_order(n, text).into();
    if n <= MAX_HELD_KEYS {
        let keys = (0..n)
            .map(|i| {
                Bound::from_borrowed_ptr(py, key(i))
                    .cast_into_unchecked()
                    .unbind()
            })
            .collect();
        let kept = KeyOrder {
            keys,
            order: order.clone(),
        };
        // Dropping an evicted order only releases strs: no Python code runs under the borrow.
        let _ = KEY_ORDERS.try_with(|orders| {
            let mut orders = orders.borrow_mut();
            let mut held: usize = orders.iter().map(|known| known.keys.len()).sum();
            while !orders.is_empty() && (orders.len() >= MAX_ORDERS || held + n > MAX_HELD_KEYS) {
                held -= orders.remove(0).keys.len();
            }
            orders.push(kept);
        });
    }
    order
}

/// Two adjacent entries of sorted `entries` with the same key text: the legacy kept one of
/// them silently, this refuses.
fn refuse_collisions(entries: &[Entry<'_>]) -> Result<(), SerError> {
    match entries
        .windows(2)
        .find(|w| w[0].key.bytes() == w[1].key.bytes())
    {
        Some(pair) => Err(SerErrorKind::KeyCollision(
            String::from_utf8_lossy(pair[0].key.bytes()).into_owned(),
        )
        .into()),
        None => Ok(()),
    }
}

/// Sort by key text (code point order, which is UTF-8 byte order) and refuse two keys that
/// became the same string: the legacy kept one of them silently.
fn sorted_entries<'py>(
    mut entries: Vec<Entry<'py>>,
    rules: Rules,
    empty_source: bool,
) -> Result<Node<'py>, SerError> {
    // Dicts often arrive sorted (built from sorted data, or read back from a canonical file):
    // one linear pass proves it, and strictly increasing keys also rule out collisions.
    if entries
        .windows(2)
        .all(|w| key_less(w[0].key.bytes(), w[1].key.bytes()))
    {
        return Ok(Node::Object {
            entries,
            rules,
            empty_source,
        });
    }
    sort_by_key_text(&mut entries);
    refuse_collisions(&entries)?;
    Ok(Node::Object {
        entries,
        rules,
        empty_source,
    })
}

/// A dict as `json.dumps` writes it: keys converted by json's rules, sorted by the original
/// keys (as `sorted(d.items())` does) when asked.
fn json_object<'py>(
    dict: &Bound<'py, PyDict>,
    mut raw: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
    profile: &Profile<'py>,
    empty_source: bool,
) -> Result<Node<'py>, SerError> {
    let py = dict.py();
    if profile.sort_keys {
        // SAFETY: type checks on live objects.
        let all_str = raw
            .iter()
            .all(|(k, _)| unsafe { ffi::PyUnicode_CheckExact(k.as_ptr()) } != 0);
        if all_str {
            let mut keyed = Vec::with_capacity(raw.len());
            for (k, v) in raw {
                keyed.push(Entry {
                    key: Text::from_str_object(k.cast::<PyString>()?)?,
                    value: v,
                });
            }
            if !keyed
                .windows(2)
                .all(|w| key_less(w[0].key.bytes(), w[1].key.bytes()))
            {
                sort_by_key_text(&mut keyed);
            }
            return Ok(Node::Object {
                entries: keyed,
                rules: Rules::Json,
                empty_source,
            });
        }
        // Mixed or non-str keys: Python's own comparison decides, errors included.
        let items = PyList::empty(py);
        for (k, v) in &raw {
            items.append(PyTuple::new(py, [k, v])?)?;
        }
        if let Err(err) = items.sort() {
            if err.is_instance_of::<pyo3::exceptions::PyTypeError>(py) {
                return Err(SerErrorKind::IncomparableKeys(err.to_string()).into());
            }
            return Err(err.into());
        }
        raw = items
            .iter()
            .map(|t| Ok((t.get_item(0)?, t.get_item(1)?)))
            .collect::<PyResult<_>>()?;
    }
    // Keys are converted while writing, each just before its value, so that errors come in
    // the order json.dumps raises them.
    Ok(Node::JsonObject {
        items: raw,
        empty_source,
    })
}

/// A key as `json.dumps` converts it; `None` when `skipkeys` drops it.
pub fn json_key<'py>(
    key: &Bound<'py, PyAny>,
    profile: &Profile<'py>,
) -> Result<Option<Text<'py>>, SerError> {
    if let Ok(s) = key.cast::<PyString>() {
        return Ok(Some(Text::from_str_object(s)?));
    }
    let ptr = key.as_ptr();
    // SAFETY: type checks and singleton comparisons on a live object.
    unsafe {
        if ffi::PyFloat_Check(ptr) != 0 {
            let v = ffi::PyFloat_AsDouble(ptr);
            if !v.is_finite() && !profile.allow_nan {
                return Err(SerErrorKind::OutOfRangeFloat.into());
            }
            let mut out = Vec::with_capacity(24);
            format::write_float(&mut out, v);
            return Ok(Some(Text::Utf8(out)));
        }
        if ptr == ffi::Py_True() {
            return Ok(Some(Text::Static("true")));
        }
        if ptr == ffi::Py_False() {
            return Ok(Some(Text::Static("false")));
        }
        if ptr == ffi::Py_None() {
            return Ok(Some(Text::Static("null")));
        }
        if ffi::PyLong_Check(ptr) != 0 {
            return Ok(Some(match small_int(key) {
                Some(v) => {
                    let mut out = Vec::with_capacity(20);
                    format::write_i64(&mut out, v);
                    Text::Utf8(out)
                }
                None => Text::from_str_object(big_int_repr(key)?.cast::<PyString>()?)?,
            }));
        }
    }
    if profile.skipkeys {
        return Ok(None);
    }
    Err(SerErrorKind::InvalidKey(type_name(key)).into())
}

/// A set or frozenset under the artifact pass: `sorted([sanitize(v) for v in s])`, and where the
/// sanitized elements do not compare, ordered by `str()` of each element instead of failing.
fn sorted_set<'py>(obj: &Bound<'py, PyAny>, profile: &Profile<'py>) -> Result<Node<'py>, SerError> {
    let py = obj.py();
    let originals: Vec<Bound<'py, PyAny>> = obj.try_iter()?.collect::<PyResult<_>>()?;
    let sanitized = PyList::empty(py);
    for item in &originals {
        sanitized.append(to_python(item, Rules::Artifact, profile)?)?;
    }
    match sanitized.sort() {
        Ok(()) => Ok(Node::Items(sanitized.iter().collect(), Rules::Artifact)),
        Err(err) if err.is_instance_of::<pyo3::exceptions::PyTypeError>(py) => {
            let mut keyed = Vec::with_capacity(originals.len());
            for (original, value) in originals.iter().zip(sanitized.iter()) {
                keyed.push((str_of(original)?, value));
            }
            keyed.sort_by(|a, b| a.0.bytes().cmp(b.0.bytes()));
            Ok(Node::Items(
                keyed.into_iter().map(|(_, v)| v).collect(),
                Rules::Artifact,
            ))
        }
        Err(err) => Err(err.into()),
    }
}

/// The sanitized Python value of `obj`: what the legacy passes returned, with atomicjson's
/// extensions. Values under `Rules::Json` are returned untouched, as the legacy did.
pub fn to_python<'py>(
    obj: &Bound<'py, PyAny>,
    rules: Rules,
    profile: &Profile<'py>,
) -> Result<Bound<'py, PyAny>, SerError> {
    to_python_in(obj, rules, profile, &mut Vec::new())
}

/// `to_python` below the objects of `open` (outermost first), which tell the depth and, at the
/// limit, whether the data is circular (as the encoder tells it).
fn to_python_in<'py>(
    obj: &Bound<'py, PyAny>,
    rules: Rules,
    profile: &Profile<'py>,
    open: &mut Vec<*mut ffi::PyObject>,
) -> Result<Bound<'py, PyAny>, SerError> {
    if rules == Rules::Json {
        return Ok(obj.clone());
    }
    if open.len() > super::encode::MAX_DEPTH || crate::stack::exhausted(crate::stack::limit()) {
        return Err(super::encode::depth_error(open, true));
    }
    open.push(obj.as_ptr());
    let out = convert(obj, rules, profile, open);
    open.pop();
    out
}

fn convert<'py>(
    obj: &Bound<'py, PyAny>,
    rules: Rules,
    profile: &Profile<'py>,
    open: &mut Vec<*mut ffi::PyObject>,
) -> Result<Bound<'py, PyAny>, SerError> {
    let py = obj.py();
    let mut child = |o: &Bound<'py, PyAny>, r: Rules, i: Segment<'_>| {
        to_python_in(o, r, profile, open).map_err(|e| i.attach(e))
    };
    Ok(match classify(obj, rules, profile)? {
        Node::Null => py.None().into_bound(py),
        Node::Bool(_) | Node::Int(_) | Node::Float(_) => obj.clone(),
        Node::Str(text) => text.to_py(py)?,
        Node::Seq(seq, r) => {
            let out = PyList::empty(py);
            for (i, item) in seq.try_iter()?.enumerate() {
                out.append(child(&item?, r, Segment::Index(i))?)?;
            }
            out.into_any()
        }
        Node::Items(items, r) => {
            let out = PyList::empty(py);
            for (i, item) in items.iter().enumerate() {
                out.append(child(item, r, Segment::Index(i))?)?;
            }
            out.into_any()
        }
        Node::Object {
            entries, rules: r, ..
        } => {
            let out = PyDict::new(py);
            for entry in &entries {
                let value = child(&entry.value, r, Segment::Key(entry.key.bytes()))?;
                out.set_item(entry.key.to_py(py)?, value)?;
            }
            out.into_any()
        }
        Node::Redirect(target, r) => to_python_in(&target, r, profile, open)?,
        // Only `Rules::Json` makes these, and such values are returned untouched above.
        Node::JsonObject { .. } => obj.clone(),
    })
}

/// Where in the document a child sits, for error messages.
#[derive(Clone, Copy)]
pub enum Segment<'a> {
    Index(usize),
    Key(&'a [u8]),
}

impl Segment<'_> {
    pub fn attach(self, err: SerError) -> SerError {
        match self {
            Segment::Index(i) => err.at_index(i),
            Segment::Key(k) => err.at_key(k),
        }
    }
}
