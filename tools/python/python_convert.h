// Values between Python and the libraries: cb::Json <-> Python objects (dicts,
// lists, numbers, strings), and cb::Tensor <-> numpy arrays. A tensor becomes
// an array over the tensor's own bytes (no copy): the array holds a reference
// to the tensor's buffer, so it stays valid after the model runs again.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "ir/tensor.h"
#include "support/json.h"

namespace cb::python {

namespace py = pybind11;

// JSON-like Python values (None, bool, int, float, str, list/tuple, dict with
// str keys) -> Json; anything else is a cb::Error naming `what` and the type.
Json json_from_python(const py::handle& value, const std::string& what);
py::object json_to_python(const Json& j);

// A numpy array over the tensor's bytes (zero copy), or a copy for the dtypes
// numpy lacks (bf16 -> float32).
py::array tensor_to_numpy(const Tensor& t);
// An array (or anything np.asarray takes) as a tensor of its own dtype;
// C-contiguous arrays of a supported dtype are wrapped without a copy.
Tensor tensor_from_numpy(const py::handle& value, const std::string& what);

}  // namespace cb::python
