#include "tools/python/python_convert.h"

#include <cmath>
#include <memory>

#include "support/error.h"

namespace cb::python {

Json json_from_python(const py::handle& v, const std::string& what) {
  if (v.is_none()) return Json();
  if (py::isinstance<py::bool_>(v)) return Json(v.cast<bool>());
  if (py::isinstance<py::int_>(v)) return Json(v.cast<int64_t>());
  if (py::isinstance<py::float_>(v)) return Json(v.cast<double>());
  if (py::isinstance<py::str>(v)) return Json(v.cast<std::string>());
  if (py::isinstance<py::dict>(v)) {
    Json::Object o;
    for (auto [k, x] : v.cast<py::dict>()) {
      CB_CHECK(py::isinstance<py::str>(k),
               what << ": keys must be strings, not " << py::str(k.get_type()).cast<std::string>());
      std::string key = k.cast<std::string>();
      o[key] = json_from_python(x, what + "." + key);
    }
    return Json(std::move(o));
  }
  if (py::isinstance<py::list>(v) || py::isinstance<py::tuple>(v)) {
    Json::Array a;
    for (py::handle x : v) a.push_back(json_from_python(x, what));
    return Json(std::move(a));
  }
  // numpy scalars and other numbers
  if (py::hasattr(v, "__index__")) return Json(v.attr("__index__")().cast<int64_t>());
  if (py::hasattr(v, "__float__")) return Json(v.attr("__float__")().cast<double>());
  CB_FAIL(what << ": a " << py::str(v.get_type()).cast<std::string>()
               << " is not a configuration value (use dicts, lists, strings, numbers, booleans, None)");
}

py::object json_to_python(const Json& j) {
  switch (j.type()) {
    case Json::Type::null: return py::none();
    case Json::Type::boolean: return py::bool_(j.as_bool());
    case Json::Type::integer: return py::int_(j.as_int());
    case Json::Type::real: return py::float_(j.as_double());
    case Json::Type::string: return py::str(j.as_string());
    case Json::Type::array: {
      py::list l;
      for (const Json& x : j.as_array()) l.append(json_to_python(x));
      return l;
    }
    case Json::Type::object: {
      py::dict d;
      for (const auto& [k, x] : j.as_object()) d[py::str(k)] = json_to_python(x);
      return d;
    }
  }
  return py::none();
}

namespace {

// The numpy dtype of a DType, or none (bf16).
std::optional<py::dtype> numpy_dtype(DType t) {
  switch (t) {
    case DType::f32: return py::dtype::of<float>();
    case DType::f64: return py::dtype::of<double>();
    case DType::f16: return py::dtype("float16");
    case DType::i64: return py::dtype::of<int64_t>();
    case DType::i32: return py::dtype::of<int32_t>();
    case DType::i16: return py::dtype::of<int16_t>();
    case DType::i8: return py::dtype::of<int8_t>();
    case DType::u64: return py::dtype::of<uint64_t>();
    case DType::u32: return py::dtype::of<uint32_t>();
    case DType::u16: return py::dtype::of<uint16_t>();
    case DType::u8: return py::dtype::of<uint8_t>();
    case DType::boolean: return py::dtype::of<bool>();
    default: return std::nullopt;
  }
}

std::optional<DType> dtype_of_numpy(const py::dtype& d) {
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::i64, DType::i32, DType::i16, DType::i8, DType::u64,
                  DType::u32, DType::u16, DType::u8, DType::boolean})
    if (numpy_dtype(t)->equal(d)) return t;
  return std::nullopt;
}

}  // namespace

py::array tensor_to_numpy(const Tensor& t) {
  std::vector<py::ssize_t> shape(t.dims().begin(), t.dims().end());
  std::optional<py::dtype> dt = numpy_dtype(t.dtype());
  if (!dt) {  // bf16: widened to float32
    CB_CHECK(t.dtype() == DType::bf16, "a " << dtype_name(t.dtype()) << " tensor has no numpy dtype");
    py::array_t<float> out(shape);
    const uint16_t* in = t.data<uint16_t>();
    float* o = out.mutable_data();
    for (int64_t i = 0; i < t.numel(); ++i) o[i] = bf16_to_float(in[i]);
    return out;
  }
  // Strides computed here, not from the dtype: pybind11 before 2.12 reads a
  // numpy 2 dtype's item size wrongly (its struct layout changed).
  std::vector<py::ssize_t> strides(shape.size());
  py::ssize_t stride = py::ssize_t(dtype_size(t.dtype()));
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i];
  }
  // The capsule owns a copy of the tensor: its buffer lives as long as the array.
  auto* keep = new Tensor(t);
  py::capsule owner(keep, [](void* p) { delete static_cast<Tensor*>(p); });
  return py::array(*dt, shape, strides, t.raw(), owner);
}

Tensor tensor_from_numpy(const py::handle& value, const std::string& what) {
  py::array a = py::array::ensure(value, py::array::c_style);
  CB_CHECK(a, what << ": expected an array, not a " << py::str(value.get_type()).cast<std::string>());
  std::optional<DType> t = dtype_of_numpy(a.dtype());
  CB_CHECK(t, what << ": numpy dtype " << py::str(a.dtype()).cast<std::string>() << " is not supported");
  std::vector<int64_t> dims(a.shape(), a.shape() + a.ndim());
  // The tensor keeps the array alive (no copy): a Python reference released under the GIL.
  auto* ref = new py::object(a);
  std::shared_ptr<void> owner(ref, [](void* p) {
    py::gil_scoped_acquire gil;
    delete static_cast<py::object*>(p);
  });
  size_t bytes = dtype_size(*t);  // not a.nbytes(): see tensor_to_numpy
  for (int64_t d : dims) bytes *= size_t(d);
  return Tensor::wrap(*t, dims, buffer_view(const_cast<void*>(a.data()), bytes, owner));
}

}  // namespace cb::python
