//! berth._native: thin pyo3 wrappers over the berth-* crates. Converts
//! arguments, releases the GIL around all hashing and I/O, maps errors.

use std::fs::File;
use std::os::fd::{BorrowedFd, RawFd};
use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use berth_layer::{Compression, PackOptions, Source, UnpackOptions};

create_exception!(
    berth._native,
    LayerError,
    PyException,
    "A layer could not be unpacked or packed: hostile entry, corrupt stream, digest mismatch."
);

fn layer_err(e: berth_layer::Error) -> PyErr {
    match e {
        berth_layer::Error::InvalidArgument(msg) => PyValueError::new_err(msg),
        other => LayerError::new_err(other.to_string()),
    }
}

/// Below this size hashing is faster than releasing and retaking the GIL.
const GIL_RELEASE_MIN: usize = 2048;

/// A held buffer-protocol view (bytes, bytearray, memoryview, array...).
struct HeldBuffer(ffi::Py_buffer);

impl HeldBuffer {
    fn get(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut view = std::mem::MaybeUninit::<ffi::Py_buffer>::uninit();
        // PyBUF_SIMPLE: contiguous bytes, any item format, as hashlib accepts.
        let rc = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), ffi::PyBUF_SIMPLE) };
        if rc != 0 {
            return Err(PyErr::take(obj.py()).unwrap_or_else(|| {
                PyTypeError::new_err("a bytes-like object is required")
            }));
        }
        Ok(HeldBuffer(unsafe { view.assume_init() }))
    }

    fn as_slice(&self) -> &[u8] {
        if self.0.len == 0 || self.0.buf.is_null() {
            return &[];
        }
        // SAFETY: the exporter keeps buf..buf+len valid until PyBuffer_Release.
        unsafe { std::slice::from_raw_parts(self.0.buf as *const u8, self.0.len as usize) }
    }
}

impl Drop for HeldBuffer {
    fn drop(&mut self) {
        // Releasing needs the GIL; every HeldBuffer is dropped while holding it.
        unsafe { ffi::PyBuffer_Release(&mut self.0) }
    }
}

// SAFETY: the view is only read, and released on the thread holding the GIL.
unsafe impl Send for HeldBuffer {}
unsafe impl Sync for HeldBuffer {}

/// Run `f` over the bytes of `data`, without the GIL when it is worth it.
fn with_bytes<R: Send>(py: Python<'_>, data: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R + Send) -> PyResult<R> {
    if let Ok(b) = data.cast::<PyBytes>() {
        let slice = b.as_bytes();
        return Ok(if slice.len() >= GIL_RELEASE_MIN { py.detach(|| f(slice)) } else { f(slice) });
    }
    let held = HeldBuffer::get(data)?;
    let slice = held.as_slice();
    Ok(if slice.len() >= GIL_RELEASE_MIN { py.detach(|| f(slice)) } else { f(slice) })
}

/// Streaming sha256 (SHA-NI when the CPU has it), hashlib-compatible.
// frozen + Mutex: updates from several Python threads serialise (as hashlib's
// do) instead of failing on a busy borrow while the GIL is released.
#[pyclass(name = "Sha256", module = "berth._native", frozen)]
struct PySha256 {
    inner: Mutex<berth_digest::Sha256>,
}

impl PySha256 {
    fn state(&self) -> berth_digest::Sha256 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[pymethods]
impl PySha256 {
    #[new]
    #[pyo3(signature = (data=None))]
    fn new(py: Python<'_>, data: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let mut inner = berth_digest::Sha256::new();
        if let Some(data) = data {
            with_bytes(py, data, |b| inner.update(b))?;
        }
        Ok(Self { inner: Mutex::new(inner) })
    }

    fn update(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let inner = &self.inner;
        with_bytes(py, data, |b| inner.lock().unwrap_or_else(|p| p.into_inner()).update(b))
    }

    fn hexdigest(&self) -> String {
        self.state().hexdigest()
    }

    fn digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.state().digest())
    }

    fn copy(&self) -> Self {
        Self { inner: Mutex::new(self.state()) }
    }

    #[getter]
    fn name(&self) -> &'static str {
        "sha256"
    }

    #[getter]
    fn digest_size(&self) -> usize {
        32
    }

    #[getter]
    fn block_size(&self) -> usize {
        64
    }
}

/// Hex sha256 of a file's content.
#[pyfunction]
fn sha256_file(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    py.detach(|| berth_digest::sha256_file(&path)).map_err(PyErr::from)
}

#[pyfunction]
#[pyo3(signature = (data, seed=0))]
fn xxh3_64(py: Python<'_>, data: &Bound<'_, PyAny>, seed: u64) -> PyResult<u64> {
    with_bytes(py, data, |b| berth_digest::xxh3_64(b, seed))
}

#[pyfunction]
fn xxh3_128_hex(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<String> {
    with_bytes(py, data, |b| format!("{:032x}", berth_digest::xxh3_128(b)))
}

/// A path (str or os.PathLike) or a readable fd (int, which stays the caller's).
fn source_arg(obj: &Bound<'_, PyAny>) -> PyResult<Source> {
    if obj.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err("layer source must be a path or a file descriptor, not bool"));
    }
    if let Ok(fd) = obj.extract::<RawFd>() {
        if fd < 0 {
            return Err(PyValueError::new_err(format!("invalid file descriptor {fd}")));
        }
        // Duplicate so the caller keeps ownership of (and closes) its fd.
        let owned = rustix::io::fcntl_dupfd_cloexec(unsafe { BorrowedFd::borrow_raw(fd) }, 0)
            .map_err(|e| PyErr::from(std::io::Error::from(e)))?;
        return Ok(Source::File(File::from(owned)));
    }
    obj.extract::<PathBuf>()
        .map(Source::Path)
        .map_err(|_| PyTypeError::new_err("layer source must be a path (str or os.PathLike) or a file descriptor"))
}

fn unpack_result<'py>(py: Python<'py>, s: &berth_layer::UnpackStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("diff_id", &s.diff_id)?;
    d.set_item("digest", &s.digest)?;
    d.set_item("compressed_size", s.compressed_size)?;
    d.set_item("size", s.size)?;
    d.set_item("entries", s.entries)?;
    d.set_item("compression", s.compression.name())?;
    Ok(d)
}

#[pyfunction]
#[pyo3(signature = (source, target, *, expected_digest=None, expected_diff_id=None, file_workers=None, source_digest=true))]
fn unpack_layer<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    target: PathBuf,
    expected_digest: Option<String>,
    expected_diff_id: Option<String>,
    file_workers: Option<usize>,
    source_digest: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let source = source_arg(source)?;
    let opts = UnpackOptions { expected_digest, expected_diff_id, file_workers, skip_source_digest: !source_digest };
    let stats = py.detach(|| berth_layer::unpack(source, &target, &opts)).map_err(layer_err)?;
    unpack_result(py, &stats)
}

#[pyfunction]
#[pyo3(signature = (jobs, *, threads=0))]
fn unpack_layers<'py>(py: Python<'py>, jobs: &Bound<'py, PyAny>, threads: usize) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let mut parsed = Vec::new();
    let shape = || PyTypeError::new_err("each job must be (source, target) or (source, target, {option: value}) with unpack_layer's keyword arguments");
    for job in jobs.try_iter()? {
        let job = job?;
        let (source, target, opts): (Bound<'py, PyAny>, PathBuf, Option<Bound<'py, PyDict>>) = match job.len() {
            Ok(2) => {
                let (s, t) = job.extract().map_err(|_| shape())?;
                (s, t, None)
            }
            Ok(3) => {
                let (s, t, o) = job.extract().map_err(|_| shape())?;
                (s, t, Some(o))
            }
            _ => return Err(shape()),
        };
        let mut options = UnpackOptions::default();
        if let Some(o) = opts {
            for (key, value) in o.iter() {
                match key.extract::<String>()?.as_str() {
                    "expected_digest" => options.expected_digest = value.extract()?,
                    "expected_diff_id" => options.expected_diff_id = value.extract()?,
                    "file_workers" => options.file_workers = value.extract()?,
                    "source_digest" => options.skip_source_digest = !value.extract::<bool>()?,
                    other => return Err(PyTypeError::new_err(format!("unknown unpack option {other:?}"))),
                }
            }
        }
        parsed.push((source_arg(&source)?, target, options));
    }
    let results = py.detach(|| berth_layer::unpack_layers(parsed, threads));
    results
        .into_iter()
        .map(|r| match r {
            Ok(stats) => Ok(unpack_result(py, &stats)?.into_any()),
            Err(e) => Ok(layer_err(e).into_value(py).into_bound(py).into_any()),
        })
        .collect()
}

#[pyfunction]
#[pyo3(signature = (source, output, *, compression="gzip", level=None, overlay_upper=false))]
fn pack_layer<'py>(
    py: Python<'py>,
    source: PathBuf,
    output: PathBuf,
    compression: &str,
    level: Option<i32>,
    overlay_upper: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let compression: Compression = compression.parse().map_err(layer_err)?;
    let opts = PackOptions { compression, level, overlay_upper };
    let stats = py.detach(|| berth_layer::pack_layer(&source, &output, &opts)).map_err(layer_err)?;
    let d = PyDict::new(py);
    d.set_item("diff_id", stats.diff_id)?;
    d.set_item("digest", stats.digest)?;
    d.set_item("size", stats.size)?;
    d.set_item("uncompressed_size", stats.uncompressed_size)?;
    Ok(d)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("LayerError", m.py().get_type::<LayerError>())?;
    m.add_class::<PySha256>()?;
    m.add_function(wrap_pyfunction!(sha256_file, m)?)?;
    m.add_function(wrap_pyfunction!(xxh3_64, m)?)?;
    m.add_function(wrap_pyfunction!(xxh3_128_hex, m)?)?;
    m.add_function(wrap_pyfunction!(unpack_layer, m)?)?;
    m.add_function(wrap_pyfunction!(unpack_layers, m)?)?;
    m.add_function(wrap_pyfunction!(pack_layer, m)?)?;
    Ok(())
}
