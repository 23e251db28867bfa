// codebook._codebook: the compiled half of `import codebook` (docs/python.md).
// Every cb::Error (and a bad request to the cache API) becomes a
// codebook.Error carrying the CLI's message.
#include "support/error.h"
#include "tools/python/bindings.h"
#include "tools/serve/http_error.h"

PYBIND11_MODULE(_codebook, m) {
  namespace py = pybind11;
  m.doc() = "codebook's C++ runtime (use the codebook package, not this module)";
  py::register_exception<cb::Error>(m, "Error", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const cb::serve::HttpError& e) {
      py::object error = py::module_::import("codebook._codebook").attr("Error");
      PyErr_SetString(error.ptr(), e.what());
    }
  });
  cb::python::bind_model(m);
  cb::python::bind_train(m);
  cb::python::bind_cache(m);
}
